"""Data models and scoring services (issue 22): train inside, judge the model, answer from
inside. See docs/models.md."""
