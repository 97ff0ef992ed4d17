"""gunicorn settings for wsgi_app.py: ``cd examples && gunicorn -c gunicorn.conf.py``.

Deploy check, as the user gunicorn runs as: ``slack-logging check --send --config ../logging.yaml``.
"""

wsgi_app = "wsgi_app:app"
bind = "127.0.0.1:8000"
workers = 4

# --preload: the master imports the app, and so runs slack_logging.configure(), once, then forks.
# That is safe with slack-logging, and needs no post_fork or worker_exit hook:
# - the handler starts no thread until the first record is logged, so a master that only
#   imports and forks has none in fork();
# - one os.register_at_fork hook pauses the handler's threads before each fork and gives every
#   worker its own queue, threads, outbox connection and HTTP pool after it;
# - the workers share the alerts directory: one of them (flock-elected) sends, at Slack's rate
#   for all of them; if it dies, another worker that has logged takes over within a second,
#   and the worker gunicorn starts in its place picks up what it left;
# - alerts left pending by an earlier run are picked up at import, but after forking the master
#   keeps off the sender lock for 3 s so that a worker sends them, not the master.
# Do not log alerts at import time from the app module: they would be queued in the master.
preload_app = True

# Workers leave through sys.exit on a graceful stop, so atexit runs and slack-logging delivers for
# at most its shutdown_timeout (1 s); anything left waits in the alerts directory (outbox or spill
# files) for the next process, and the exit line on stderr says how many.
graceful_timeout = 10
