"""What operators watch: the metrics, the JSON log lines, and the admin port that serves them."""
