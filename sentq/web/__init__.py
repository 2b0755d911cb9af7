"""The HTTP face of sentq (`sentq api`): ``create_app(settings)`` in ``sentq.web.app``. Needs the ``api`` extra."""
