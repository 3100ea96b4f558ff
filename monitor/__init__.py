"""amplify-monitor: watches every AWS Amplify Hosting app and branch, exports Prometheus
metrics and sends Slack alerts when builds fail."""

__version__ = "0.1.0"
