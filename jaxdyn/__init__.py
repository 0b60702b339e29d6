"""jaxdyn."""
