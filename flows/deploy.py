"""Entry point of the scheduled deployment (:mod:`skillmaster.orchestration.deploy`).

python flows/deploy.py [--cron "0 2 * * *"]
"""

from skillmaster.orchestration.deploy import main

if __name__ == "__main__":
    main()
