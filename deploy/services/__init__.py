"""One module per service: its config section and its `Service` subclass."""
