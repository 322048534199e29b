"""Readers of the data sources (synthetic, MovieLens, CSV) into canonical InteractionData."""
