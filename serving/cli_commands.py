"""The serving subcommands of `recsys` (cli/cli.py registers them with add_commands):

  recsys serve --model-base serving_models [--port 8500]
  recsys recommend --user U [--user V] [--context hour=23 --context device=tv] [-k 10]
                   [--json] [--target 127.0.0.1:8500] [--data-dir runs/demo/data/synthetic]
  recsys export-serving-config --model-base serving_models [--out DIR]

`recommend` runs the three-stage funnel against a model server over gRPC: one Predict to
the `recommender` servable when one is served (serving/one_call.py), else retrieval and
ranking calls with the rules in Python (serving/funnel.py); --data-dir (the canonical
data the pipeline wrote) adds titles, and for the two-call funnel drops items the user
has seen and caps items per genre (the recommender has those tables inside). Errors print one line and exit 2 when the
request or the set-up is wrong (no server, bad k); 1 when the server fails a request.
"""
import argparse
import json
import math
import os
import sys
from typing import Dict, List

from recsys_tfx.serving import rules as rule_lib
from recsys_tfx.serving import tf_serving_config

# serving.model_server, .client and .funnel import TensorFlow: they are imported when a
# command runs, not when `recsys` builds its parser. Options left unset (None) take those
# modules' defaults, which the help texts quote.
USAGE_ERROR, SERVER_ERROR = 2, 1


def _error(message: str, code: int) -> int:
  print(f"error: {message}", file=sys.stderr)
  return code


# --- recsys serve --------------------------------------------------------------------------

_SERVER_OPTIONS = ("host", "port", "poll_seconds", "max_batch_size", "max_workers",
                   "max_receive_mb", "rest_port")


def _serve(args) -> int:
  import gc
  from recsys_tfx.serving import model_server, security
  # TensorFlow's modules are ~350k long-lived objects; a full garbage collection over them
  # stalls every in-flight request for ~200 ms. Frozen, they are never scanned again.
  gc.freeze()
  model_server.configure_logging()
  options = {name: getattr(args, name) for name in _SERVER_OPTIONS
             if getattr(args, name) is not None}
  options.setdefault("rest_port", tf_serving_config.REST_PORT)
  try:
    if options["rest_port"] < -1:
      raise ValueError(f"--rest-api-port must be a port, 0 (pick a free one) or -1 (no REST "
                       f"API), got {options['rest_port']}")
    if args.ssl_config_file:
      options["ssl_config"] = security.read_ssl_config(args.ssl_config_file)
    if args.batching_parameters_file and not args.enable_batching:
      raise ValueError("--batching-parameters-file is read only with --enable-batching")
    if args.enable_batching:
      options["batching"] = (
          tf_serving_config.read_batching_parameters(args.batching_parameters_file)
          if args.batching_parameters_file else tf_serving_config.BatchingParameters())
    if args.auth_token_file:
      options["token"] = security.read_token(args.auth_token_file)
      if not security.token_file_is_private(args.auth_token_file):
        print(f"warning: {args.auth_token_file} can be read by other users of this machine "
              f"(chmod 600 it)", file=sys.stderr)
    model_server.serve(args.model_base, ready_file=args.ready_file, **options)
  except (OSError, ValueError) as e:  # no model base, port taken, bad TLS config or limit
    return _error(str(e), USAGE_ERROR)
  return 0


def _add_serve(sub) -> None:
  p = sub.add_parser("serve", help="serve the pushed models over TF Serving's gRPC API")
  p.add_argument("--model-base", default="serving_models",
                 help="directory with one sub-directory per model (default: serving_models)")
  p.add_argument("--host", help="address to listen on (default 127.0.0.1; anything else "
                                "without --ssl-config-file is warned about)")
  p.add_argument("--port", type=int,
                 help="gRPC port (default 8500, TF Serving's; 0 picks a free one, see "
                      "--ready-file)")
  p.add_argument("--rest-api-port", type=int, dest="rest_port",
                 help="port of TF Serving's REST API (default 8501, TF Serving's; 0 picks a "
                      "free one, see --ready-file; -1 serves no REST API)")
  p.add_argument("--poll-seconds", type=float,
                 help="how often to look for new versions (default 2)")
  p.add_argument("--max-batch-size", type=int,
                 help="most rows one request may send (default 1000)")
  p.add_argument("--max-workers", type=int, help="threads answering requests (default 16)")
  p.add_argument("--max-receive-message-mb", type=float, dest="max_receive_mb",
                 help="largest request in MiB (default 1: 1000 rows of 50-id histories "
                      "are ~0.4 MB; parsing costs up to ~40x a request's size, so TF "
                      "Serving's 2 GB would let one request exhaust memory)")
  p.add_argument("--ssl-config-file",
                 help="TLS as TF Serving's --ssl_config_file: a text SSLConfig with the PEM "
                      "texts of server_key, server_cert and, for mutual TLS, custom_ca and "
                      "client_verify: true")
  p.add_argument("--auth-token-file",
                 help="require 'authorization: Bearer <token>' on every call, the token "
                      "read from this file (others get UNAUTHENTICATED)")
  batching = tf_serving_config.BatchingParameters()
  p.add_argument("--enable-batching", action="store_true",
                 help="merge concurrent Predict calls to the same model version and "
                      "signature into one model call, as TF Serving's --enable_batching "
                      f"(defaults: max_batch_size {batching.max_batch_size}, "
                      f"batch_timeout_micros {batching.batch_timeout_micros}, "
                      f"max_enqueued_batches {batching.max_enqueued_batches}, "
                      f"num_batch_threads {batching.num_batch_threads})")
  p.add_argument("--batching-parameters-file",
                 help="TF Serving's batching_parameters.txt (text BatchingParameters, as "
                      "`recsys export-serving-config` writes); fields left out keep the "
                      "defaults")
  p.add_argument("--ready-file", help="write host/port/rest_port/models here (JSON) once "
                                      "serving (rest_port: null without a REST API)")
  p.set_defaults(func=_serve)


# --- recsys recommend ----------------------------------------------------------------------

def parse_context(pairs: List[str]) -> Dict[str, str]:
  """["hour=23", "device=tv"] -> {"hour": "23", "device": "tv"}; values are cast to the
  signature's dtypes by the client."""
  context = {}
  for pair in pairs or []:
    name, eq, value = pair.partition("=")
    if not eq or not name.strip():
      raise ValueError(f"--context expects NAME=VALUE (e.g. hour=23), got {pair!r}")
    context[name.strip()] = value.strip()
  return context


def _format_text(rec) -> str:
  context = " ".join(f"{k}={v}" for k, v in rec.context.items()) or "unknown"
  counts = rec.rule_counts
  ranked = f"{rec.ranked} ranked" if rec.ranked else "in the retrieval order"
  lines = [f"user {rec.user_id} (context: {context}): {rec.retrieved} candidates, "
           f"{counts.get('seen', 0)} seen dropped, {ranked}, "
           f"{counts.get('genre_cap', 0)} over the genre cap, {len(rec.items)} shown "
           f"[{rec.timings_ms['total']:.1f} ms]",
           f"  {'#':>3}  {'item':<10} {'final':>7} {'ranking':>8} {'retrieval':>10} "
           f"{'(rank)':>6}  {'genre':<12} title  [rules]"]
  for i, c in enumerate(rec.items, start=1):
    touched = f"  [{', '.join(c.rules)}]" if c.rules else ""
    ranking = "-" if math.isnan(c.ranking_score) else f"{c.ranking_score:.3f}"
    lines.append(f"  {i:>3}. {c.item_id:<10} {c.final_score:7.3f} {ranking:>8} "
                 f"{c.retrieval_score:10.3f} {c.retrieval_rank:>6}  {c.genre or '-':<12} "
                 f"{c.title}{touched}")
  return "\n".join(lines)


def format_stages(stages) -> str:
  return (f"stages: retrieval: {stages.retrieval}\n"
          f"        ranking: {stages.ranking}")


def _or(value, default):
  return default if value is None else value


def _rules_config(args) -> rule_lib.RulesConfig:
  return rule_lib.RulesConfig(drop_seen=not args.keep_seen, max_per_genre=args.max_per_genre,
                              fresh_boost=args.fresh_boost, boost_mode=args.boost_mode)


def _recommend(args) -> int:
  from recsys_tfx.schema.canonical import DataError
  from recsys_tfx.serving.catalogue import Catalogue
  from recsys_tfx.serving import client as client_lib
  from recsys_tfx.serving import funnel as funnel_lib
  from recsys_tfx.serving import one_call
  from recsys_tfx.serving.client import PredictionClient, RequestFailed, ServerUnavailable
  from recsys_tfx.serving.funnel import Funnel, FunnelConfig, FunnelError
  target = args.target or client_lib.DEFAULT_TARGET
  try:
    context = parse_context(args.context)
    config = FunnelConfig(_or(args.candidates, funnel_lib.DEFAULT_CANDIDATES),
                          _rules_config(args))
    catalogue = Catalogue.from_canonical(args.data_dir) if args.data_dir else None
  except (ValueError, DataError) as e:
    return _error(str(e), USAGE_ERROR)
  if catalogue is None:
    print("note: no --data-dir: no titles, seen items are not dropped and there is no genre "
          "cap (pass the pipeline's canonical data, e.g. runs/demo/data/synthetic)",
          file=sys.stderr)
  def run_funnel(target):
    with PredictionClient(target, timeout=_or(args.timeout, client_lib.DEFAULT_TIMEOUT),
                          retrieval_model=args.retrieval_model,
                          ranking_model=args.ranking_model, ca_cert=args.ca_cert,
                          client_cert=args.client_cert, client_key=args.client_key,
                          token_file=args.auth_token_file) as client:
      history = args.history.split(",") if args.history is not None else None
      if args.two_call:
        funnel = Funnel(client, catalogue, config)
      else:
        funnel = one_call.choose_funnel(client, catalogue, config, args.recommender_model,
                                        with_history=history is not None)
      funnel.check_k(args.k)
      results = [funnel.recommend(user, args.k, context, history=history)
                 for user in args.user]
      models = [args.retrieval_model, args.ranking_model]
      if isinstance(funnel, one_call.OneCallFunnel):
        models.append(args.recommender_model)
      return results, {m: client.available_version(m) for m in models}, funnel.stages()

  embedded = None
  try:
    try:
      results, versions, stages = run_funnel(target)
    except ServerUnavailable:
      if args.target or not os.path.isdir(args.model_base):
        raise
      # Nothing listens at the default address: serve the pushed models from this process
      # for this one call, over a real gRPC socket, so `recsys recommend` works right
      # after `make demo`. `recsys serve` keeps a server up between calls.
      from recsys_tfx.serving.model_server import ModelServer
      embedded = ModelServer(args.model_base, port=0).start()
      target = embedded.address
      print(f"note: no model server at {client_lib.DEFAULT_TARGET}; serving {args.model_base} "
            f"from this process on {target} for this call (`recsys serve` keeps one running)",
            file=sys.stderr)
      results, versions, stages = run_funnel(target)
  except ServerUnavailable as e:
    return _error(f"{e}. Start one with `recsys serve --model-base serving_models` (or pass "
                  "--target host:port)", USAGE_ERROR)
  except (FunnelError, ValueError) as e:  # incl. security.SecurityConfigError
    return _error(str(e), USAGE_ERROR)
  except RequestFailed as e:
    return _error(str(e), SERVER_ERROR)
  finally:
    if embedded is not None:
      embedded.stop()
  if args.json:
    print(json.dumps({
        "target": target, "models": versions, "stages": stages.to_dict(), "k": args.k,
        "context": context,
        "recommendations": {r.user_id: [c.to_dict() for c in r.items] for r in results},
        "funnel": {r.user_id: {key: value for key, value in r.to_dict().items()
                               if key not in ("items", "user_id")} for r in results},
    }, indent=2))
  else:
    print(f"models at {target}: " +
          ", ".join(f"{m} v{v}" for m, v in versions.items() if v is not None))
    print(format_stages(stages))
    for r in results:
      print(_format_text(r))
  return 0


def show_recommendations(model_base: str, data_dir: str, users: int = 3, k: int = 10) -> int:
  """Prints the served funnel's top k for a few of the data's users: a real gRPC server on
  the pushed models, in this process, called as `recsys recommend` calls it."""
  from recsys_tfx.serving.catalogue import Catalogue
  from recsys_tfx.serving.client import PredictionClient, RequestFailed
  from recsys_tfx.serving.model_server import ModelServer
  from recsys_tfx.serving.one_call import choose_funnel
  catalogue = Catalogue.from_canonical(data_dir)
  server = ModelServer(model_base, port=0).start()
  try:
    with PredictionClient(server.address) as client:
      funnel = choose_funnel(client, catalogue)
      print(f"\nServed recommendations (the funnel over gRPC from {model_base}, as "
            f"`recsys recommend --user U --data-dir {data_dir}` gives them):")
      print(format_stages(funnel.stages()))
      for user in sorted(catalogue.user_ids())[:users]:
        print(_format_text(funnel.recommend(user, k)))
  except RequestFailed as e:
    return _error(str(e), SERVER_ERROR)
  finally:
    server.stop()
  return 0


def _add_recommend(sub) -> None:
  p = sub.add_parser("recommend", help="top-K for users: retrieve, rank and re-rank over gRPC "
                     "(a running `recsys serve` or TF Serving; else an in-process server for the call)")
  p.add_argument("--user", action="append", required=True, help="user id (repeatable)")
  p.add_argument("--context", action="append", metavar="NAME=VALUE",
                 help="context feature, e.g. hour=23 or device=tv (repeatable; "
                      "unset ones are sent as unknown)")
  p.add_argument("-k", type=int, default=10, help="items to return (default 10)")
  p.add_argument("--history", metavar="ITEM,ITEM,...",
                 help="recent item ids, oldest first, for a retrieval model that reads "
                      "history (sasrec, bert4rec, itemknn, ease, transitions) to read "
                      "instead of the user's stored history")
  p.add_argument("--json", action="store_true", help="print JSON")
  p.add_argument("--target", help="model server host:port (default 127.0.0.1:8500; if none "
                 "answers there, --model-base is served from this process for the call)")
  p.add_argument("--model-base", default="serving_models",
                 help="pushed models, served in-process when no server answers (default "
                      "serving_models)")
  p.add_argument("--timeout", type=float, help="seconds per RPC (default 10)")
  p.add_argument("--ca-cert", help="TLS: the CA certificate (PEM file) that signed the "
                                   "server's certificate")
  p.add_argument("--client-cert", help="mutual TLS: this client's certificate (PEM file)")
  p.add_argument("--client-key", help="mutual TLS: this client's private key (PEM file)")
  p.add_argument("--auth-token-file", help="send the bearer token in this file")
  p.add_argument("--data-dir", help="canonical data the pipeline wrote (titles, genres, seen "
                                    "items), e.g. runs/demo/data/synthetic")
  p.add_argument("--candidates", type=int,
                 help="candidates to rank: at most this many of what retrieval returns "
                      "(the union of its sources' trainer.top_k each) (default 1000)")
  p.add_argument("--max-per-genre", type=int, default=rule_lib.DEFAULT_MAX_PER_GENRE,
                 help="diversity cap per primary genre; 0 turns it off "
                      f"(default {rule_lib.DEFAULT_MAX_PER_GENRE})")
  p.add_argument("--fresh-boost", type=float, default=0.0,
                 help="raise items of the catalogue's newest year by this much (default 0)")
  p.add_argument("--boost-mode", choices=rule_lib.BOOST_MODES, default="add",
                 help="add: score + boost; multiply: score * (1 + boost)")
  p.add_argument("--keep-seen", action="store_true", help="do not drop items already seen")
  p.add_argument("--retrieval-model", default="retrieval")
  p.add_argument("--ranking-model", default="ranking")
  p.add_argument("--recommender-model", default="recommender",
                 help="the whole funnel in one servable: used (one Predict per user) when "
                      "it is served and can answer the request (default recommender)")
  p.add_argument("--two-call", action="store_true",
                 help="call retrieval and ranking separately even when a recommender is "
                      "served")
  p.set_defaults(func=_recommend)


# --- recsys export-serving-config ----------------------------------------------------------

def _export_serving_config(args) -> int:
  try:
    batching = tf_serving_config.BatchingParameters(
        args.max_batch_size, args.batch_timeout_micros, args.num_batch_threads,
        args.max_enqueued_batches)
    written = tf_serving_config.write(args.model_base, args.out or args.model_base,
                                      args.container_base, batching)
  except (OSError, ValueError) as e:
    return _error(str(e), USAGE_ERROR)
  print(f"models: {', '.join(written['models'])} (base_path {args.container_base}/<name>)")
  print(f"wrote {written['models_config']}\nwrote {written['batching']}")
  return 0


def _add_export_serving_config(sub) -> None:
  defaults = tf_serving_config.BatchingParameters()
  p = sub.add_parser("export-serving-config",
                     help="write models.config and batching_parameters.txt for TF Serving")
  p.add_argument("--model-base", default="serving_models",
                 help="the pushed models, one directory per model (default: serving_models)")
  p.add_argument("--out", help="where to write the files (default: the model base, so they "
                               "travel with the models to /models in the container)")
  p.add_argument("--container-base", default=tf_serving_config.CONTAINER_BASE,
                 help="the model base as TF Serving sees it "
                      f"(default {tf_serving_config.CONTAINER_BASE})")
  p.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                 help="must hold the ranker's largest request (one row per candidate)")
  p.add_argument("--batch-timeout-micros", type=int, default=defaults.batch_timeout_micros)
  p.add_argument("--num-batch-threads", type=int, default=defaults.num_batch_threads)
  p.add_argument("--max-enqueued-batches", type=int, default=defaults.max_enqueued_batches)
  p.set_defaults(func=_export_serving_config)


def add_commands(subparsers) -> None:
  """Registers serve, recommend and export-serving-config on the `recsys` parser."""
  _add_serve(subparsers)
  _add_recommend(subparsers)
  _add_export_serving_config(subparsers)


def main(argv=None) -> int:
  """The same commands without the rest of `recsys`: python -m serving.cli_commands ..."""
  parser = argparse.ArgumentParser(prog="python -m serving.cli_commands", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  add_commands(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
