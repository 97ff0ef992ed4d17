"""gunicorn settings for wsgi_app.py: ``cd examples && gunicorn -c gunicorn.conf.py``.

Deploy check, as the user gunicorn runs as: ``slack-logging check --send --config ../logging.yaml``.
"""

wsgi_app = "wsgi_app:app"
bind = "127.0.0.1:8000"
workers = 4

# --preload: the master imports the app, and so runs slack_logging.configure(), once, then forks.
# That is safe with slack-logging:
# - the handler starts no thread until the first record is logged, so a master that only
#   imports and forks has none to lose in fork();
# - each worker re-creates its queue, listener and sender after fork (os.register_at_fork),
#   so no post_fork hook is needed;
# - the workers share the alerts directory: one of them (flock-elected) sends, at Slack's rate
#   for all of them, and another takes over within a second if it dies;
# - if the directory holds alerts left by an earlier run, the master starts delivering them
#   at import; the workers still start their own threads after fork.
# Do not log alerts at import time from the app module: they would be sent from the master.
preload_app = True

# Workers leave through sys.exit on a graceful stop, so atexit runs and slack-logging flushes for
# at most its shutdown_timeout (1 s); anything left waits in the outbox for the next process.
graceful_timeout = 10
