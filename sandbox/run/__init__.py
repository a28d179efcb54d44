"""Running a job: the job service (submit, review, release), job states, the runner that
starts an isolated worker process per job, the worker itself, and the Spark and Ray engines.
"""
