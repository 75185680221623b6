"""The API's routers, one module per resource; :func:`serving.api.app.create_app` includes them."""
