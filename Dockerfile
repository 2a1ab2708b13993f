# guard: a traffic guard in front of your WAS fleet.
#   docker build -t guard .
#   docker run -p 8000:8000 -v $PWD/config:/etc/guard guard
# The admin port (/metrics /status /reload) listens on admin_listen, 127.0.0.1:9100 by
# default: set admin_listen: 0.0.0.0:9100 in the mounted config and publish 9100 only on a
# network your Prometheus reaches, never on the public one.

# Stage 1: build the wheel. mypyc compiles the request path to C (setup.py), which needs a
# compiler and the Python headers; the runtime image needs neither.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py compiled.txt README.md ./
# guard/demo.yaml links to config/demo.yaml: both go in, the wheel gets the file itself.
COPY config ./config
COPY guard ./guard
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the runtime image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /opt/guard
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin guard

# The default pages (waiting, maintenance, errors) ship inside the package.
COPY config/guard.yaml /etc/guard/guard.yaml

USER guard
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=2).status == 200 else 1)"

ENTRYPOINT ["guard"]
CMD ["run", "-c", "/etc/guard/guard.yaml"]
