"""Entry point of the SkillMaster Prefect flow (:mod:`skillmaster.orchestration.flow`).

python flows/loop.py            # one run, ephemeral Prefect (same as `skillmaster loop`)
"""

from skillmaster.orchestration.flow import skillmaster_loop

if __name__ == "__main__":
    skillmaster_loop()
