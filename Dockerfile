FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY squall ./squall
RUN python3 -m pip install . && useradd --create-home --uid 10001 squall

USER squall
WORKDIR /home/squall
ENTRYPOINT ["squall"]
CMD ["--help"]
