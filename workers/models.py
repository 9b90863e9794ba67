from __future__ import annotations

from django.db import models


class Note(models.Model):
    """Rows for the example sync ORM methods."""

    text = models.CharField(max_length=500)
    created = models.DateTimeField(auto_now_add=True)
