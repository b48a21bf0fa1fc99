# The HTTP API: slim Python, no torch, non-root, healthcheck on /healthz. Only `service/` (the API and the
# platform it stands on): it imports nothing of `models/` or `workers/` (tests/service/test_api.py).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 agilegan
WORKDIR /app

COPY docker/requirements-api.txt /app/requirements-api.txt
RUN pip install -r /app/requirements-api.txt

COPY service /app/service

USER agilegan
ENV AGILEGAN_HOST=0.0.0.0 AGILEGAN_PORT=8000 AGILEGAN_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request, os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"AGILEGAN_PORT\"]}/healthz', timeout=2)"
CMD ["sh", "-c", "exec uvicorn --factory service.api.app:create_app --host \"$AGILEGAN_HOST\" --port \"$AGILEGAN_PORT\" --workers \"${AGILEGAN_API_WORKERS:-1}\""]
