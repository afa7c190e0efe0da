"""The operator portal served by the grid (see :func:`grid_server.portal.app.setup_portal`)."""
