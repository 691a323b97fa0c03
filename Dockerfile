# icnd in a container: slim Python, non-root user, state in a volume.
#   docker build -t icnd .
#   docker run --rm -v icn-data:/var/lib/icn icnd init --data-dir /var/lib/icn
#   docker run -d --name icnd -v icn-data:/var/lib/icn -p 7946:7946 icnd
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY icn_node ./icn_node
COPY cli ./cli
COPY icn_dev ./icn_dev
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN groupadd --system icn && useradd --system --gid icn --home-dir /var/lib/icn \
      --shell /usr/sbin/nologin icn \
    && mkdir -p /var/lib/icn /etc/icn && chown icn:icn /var/lib/icn
COPY --from=build /install /usr/local
COPY config/icnd.toml /etc/icn/icnd.toml
ENV ICN_NODE_DATA_DIR=/var/lib/icn \
    ICN_MESH_LISTEN=0.0.0.0:7946 \
    ICN_METRICS_LISTEN=0.0.0.0:9464 \
    ICN_CONFIG=/etc/icn/icnd.toml \
    ICN_SOCKET=/var/lib/icn/icnd.sock
VOLUME ["/var/lib/icn"]
EXPOSE 7946 9464
USER icn
ENTRYPOINT ["icnd"]
CMD ["run", "--log-format", "json"]
