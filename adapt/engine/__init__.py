"""Running the method: a request planned into jobs keyed by content, spread over processes, Dask
workers or device batches, the run's spec and record, and the output folders it writes."""
