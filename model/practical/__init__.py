"""The practical's plan (practical.toml): its runs, running them (locally, at once, on Slurm), and the report draft."""
