"""`python -m invoice_builder`: run the service (consumers + wizard API) under uvicorn."""

from dealbooks_kit import serve

from invoice_builder.app import build_app
from invoice_builder.settings import InvoiceBuilderSettings


def main() -> None:
    settings = InvoiceBuilderSettings()
    serve(build_app(settings), settings)


if __name__ == "__main__":
    main()
