"""`python -m product_sync` runs the service."""

from dealbooks_kit import serve

from product_sync.app import Settings, build_app

if __name__ == "__main__":
    settings = Settings()
    serve(build_app(settings), settings)
