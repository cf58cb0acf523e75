"""`python -m mapping_registry` runs the service."""

from dealbooks_kit import serve

from mapping_registry.app import Settings, build_app

if __name__ == "__main__":
    settings = Settings()
    serve(build_app(settings), settings)
