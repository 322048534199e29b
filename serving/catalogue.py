"""What the re-ranking rules know about items and users: titles, genres and release years
of the catalogue, and the items each user has already interacted with.

Read from the canonical data directory the pipeline writes before a run
(<pipeline_root>/data/<source>/, e.g. runs/demo/data/synthetic), the same tables the
models were trained from.
"""
import dataclasses
from typing import Dict, FrozenSet, List, Mapping, Optional, Tuple

import pandas as pd

from recsys_tfx.schema import canonical

@dataclasses.dataclass(frozen=True)
class Item:
  title: str = ""
  genres: Tuple[str, ...] = ()  # in the order the source lists them
  year: int = canonical.UNKNOWN_YEAR

  @property
  def primary_genre(self) -> Optional[str]:
    """The first genre listed, the one the diversity cap counts; None when unknown."""
    return self.genres[0] if self.genres else None


class Catalogue:
  """Items by id and each user's seen items. Unknown ids are fine: an unknown item has
  no title, genre or year; an unknown user (cold start) has seen nothing."""

  def __init__(self, items: Mapping[str, Item],
               seen: Optional[Mapping[str, FrozenSet[str]]] = None):
    self._items = dict(items)
    self._seen = dict(seen or {})

  def __len__(self) -> int:
    return len(self._items)

  def item(self, item_id: str) -> Optional[Item]:
    return self._items.get(item_id)

  def seen(self, user_id: str) -> FrozenSet[str]:
    return self._seen.get(user_id, frozenset())

  def user_ids(self) -> List[str]:
    """Users with a history, in table order."""
    return list(self._seen)

  def newest_items(self) -> FrozenSet[str]:
    """Items released in the catalogue's newest year (unknown years ignored)."""
    newest = canonical.newest_year(item.year for item in self._items.values())
    if newest is None:
      return frozenset()
    return frozenset(i for i, item in self._items.items() if item.year == newest)

  @classmethod
  def from_frames(cls, items: pd.DataFrame,
                  interactions: Optional[pd.DataFrame] = None) -> "Catalogue":
    """From canonical tables: items (item_id, genres, title, year) and, for seen items,
    interactions (user_id, item_id)."""
    titles = items["title"] if "title" in items else pd.Series("", index=items.index)
    genres = items["genres"] if "genres" in items else pd.Series("", index=items.index)
    years = items["year"] if "year" in items else pd.Series(0, index=items.index)
    by_id = {str(i): Item("" if pd.isna(t) else str(t), canonical.parse_genres(g), int(y))
             for i, t, g, y in zip(items["item_id"], titles, genres, years.fillna(0))}
    seen: Dict[str, FrozenSet[str]] = {}
    if interactions is not None:
      grouped = interactions.groupby("user_id", sort=False)["item_id"]
      seen = {str(user): frozenset(map(str, ids)) for user, ids in grouped}
    return cls(by_id, seen)

  @classmethod
  def from_canonical(cls, data_dir: str) -> "Catalogue":
    """From a directory written by schema/canonical.py write_canonical; raises
    canonical.DataError (naming the file) when it is not one."""
    data = canonical.read_canonical(data_dir)
    return cls.from_frames(data.items, data.interactions)
