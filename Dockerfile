# One image per service: docker build --build-arg SERVICE=invoice-builder -t dealbooks/invoice-builder .
FROM python:3.11-slim AS build
ARG SERVICE
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
COPY sandboxes ./sandboxes
# Each service and sandbox is a workspace package named like its directory.
RUN uv sync --locked --no-dev --no-editable --package "$SERVICE"

FROM python:3.11-slim
ARG SERVICE
ENV PATH=/src/.venv/bin:$PATH SERVICE=${SERVICE}
RUN useradd --uid 10001 --create-home dealbooks
COPY --from=build /src/.venv /src/.venv
USER 10001
EXPOSE 8000
# The module name is the service name in snake case (invoice-builder -> invoice_builder).
CMD ["sh", "-c", "exec python -m $(echo \"$SERVICE\" | tr - _)"]
