// pm2: `pm2 start examples/ecosystem.config.js`, then `pm2 logs payment-api | grep slack-logging`
// for slack-logging's own diagnostics (one stderr line per distinct problem).
module.exports = {
  apps: [
    {
      name: "payment-api",
      cwd: __dirname,
      // A Python script. For production, point `script` at the venv's gunicorn (also a Python
      // script), e.g. script: ".venv/bin/gunicorn", args: "-c gunicorn.conf.py".
      script: "wsgi_app.py",
      interpreter: "python3",
      // pm2's cluster mode is for Node.js only; Python apps run in fork mode. Several instances
      // share the alerts directory and elect one sender among themselves.
      exec_mode: "fork",
      instances: 1,
      // pm2 stops an app with SIGINT and kills it kill_timeout ms later (default 1600).
      // slack-logging's exit flush takes at most shutdown_timeout (1 s): the default is enough,
      // 3000 leaves headroom for the app's own shutdown. Alerts not sent in time are not lost:
      // they stay in the outbox and the next start delivers them.
      kill_timeout: 3000,
      env: {
        // The webhook or token comes from the shell or the server's environment, not from git:
        //   export SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...
        // SLACK_ENABLED: "false",  // the kill switch: nothing is sent, the mirror goes on
        SLACK_ALERTS_DIR: "/var/lib/payment-api/slack_alerts",
        SLACK_SERVICE_NAME: "payment-api",
        SLACK_ENVIRONMENT: "production",
      },
    },
  ],
};
