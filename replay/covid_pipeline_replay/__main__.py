"""Run the replay API: `python -m covid_pipeline_replay --port 8000 [--latency-ms 100]`."""

import argparse
import json
import logging
import signal
import threading

from covid_pipeline_replay.server import Fault, ReplayServer


def main(argv: list[str] | None = None) -> None:
    """Parse flags, start the server and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m covid_pipeline_replay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--page-size", type=int, default=None, help="paginate every answer")
    parser.add_argument(
        "--profile",
        choices=("fixture", "volume"),
        default="fixture",
        help="volume: every US day at the real API's volume (~3,200 counties), re-dated from "
        "the bundled county days; for speed and memory only, its values are another day's",
    )
    parser.add_argument(
        "--faults",
        type=json.loads,
        default=[],
        help='JSON list of fault rules, e.g. \'[{"kind": "status", "status": 503, "times": 2}]\' '
        'or a rate limiter\'s window: \'[{"kind": "throttle", "seconds": 5, "retry_after": 0}]\' '
        "(server.py's Fault lists every kind)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = ReplayServer(
        args.host,
        args.port,
        latency_s=args.latency_ms / 1000,
        page_size=args.page_size,
        faults=[Fault(**rule) for rule in args.faults],
        profile=args.profile,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with server:
        # The URL goes to stdout alone, so scripts can read it; the rest is for people.
        print(server.url, flush=True)  # noqa: T201
        logging.info(
            "replaying JHU CSSE data (CC BY 4.0) at %s, %s profile; Ctrl-C stops",
            server.url,
            args.profile,
        )
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
