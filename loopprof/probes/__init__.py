"""In-process probes: each collects one signal cheaply; aggregation happens off the event loop."""
