"""The web console at /console: server-rendered pages (Jinja2, htmx, uPlot) over the same
APIs and authorisation as SDK calls. `lamina.console.app` builds its routes."""
