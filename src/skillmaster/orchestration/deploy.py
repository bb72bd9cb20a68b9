"""Serve the SkillMaster loop as a scheduled Prefect deployment.

    prefect server start --host 127.0.0.1            # terminal 1 (UI on http://127.0.0.1:4200)
    export PREFECT_API_URL=http://127.0.0.1:4200/api  # terminal 2
    python flows/deploy.py [--cron "0 2 * * *"]       # registers + serves; trigger runs from the UI

The process keeps serving until stopped (Ctrl-C): it executes the runs, so scheduled runs only
start while it runs. Runs appear under the flow "skillmaster-loop"; trigger one from the UI or with
``prefect deployment run skillmaster-loop/nightly --param overrides='["eval.limit=2"]'``.
"""

from __future__ import annotations

import argparse

from skillmaster.orchestration.flow import skillmaster_loop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="nightly")
    parser.add_argument("--cron", default="0 2 * * *", help="Schedule (cron, server time zone).")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    skillmaster_loop.serve(
        name=args.name,
        cron=args.cron,
        parameters={"params": args.params, "overrides": []},
        tags=["skillmaster"],
        description="SkillMaster iterations (collect, review, counterfactual, train, evaluate) + report.",
    )


if __name__ == "__main__":
    main()
