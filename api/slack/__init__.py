"""The Slack bot (slack-bolt) mounted on the API app at `POST /slack/events`; see docs/SLACK.md."""
