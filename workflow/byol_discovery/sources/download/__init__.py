"""A polite, resumable, validating downloader for many small files (survey cutouts).

Why each piece is here:

* Survey services have no published rate limit but do throttle: a few connections
  (``connections``) and a global request-rate cap shared by all threads (``rate``) keep us
  welcome; a 429 with Retry-After pauses every thread, not only the one that was told.
* 429, 5xx, timeouts and cut connections are retried with exponential backoff and jitter;
  answers that can never succeed (400, 404, a text error page, a cutout outside the
  footprint) are recorded as ``rejected`` and not asked again.
* Services answer some errors with HTTP 200 and a text page, so every body is validated
  (:func:`validate_payload`) before it is kept; files are written atomically.
* A ledger (id, url, path, status, bytes, sha256, attempts, error) records every object.
  Rows are appended to a journal as they finish, so an interrupted run loses nothing; a
  rerun skips files the ledger says are complete and retries only the failures.
* Tasks are consumed from an iterator with a bounded window of requests in flight, so
  memory does not grow with the catalogue (beyond one small ledger row per object).

Modules: :mod:`.settings` (settings, tasks, errors), :mod:`.paths`, :mod:`.validation`,
:mod:`.timing`, :mod:`.request`, :mod:`.ledger`, :mod:`.progress`, :mod:`.many_files`
(:func:`~.many_files.download_all`) and :mod:`.large_file`
(:func:`~.large_file.download_file`).
"""
