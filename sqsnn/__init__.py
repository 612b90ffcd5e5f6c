"""sqsnn."""
