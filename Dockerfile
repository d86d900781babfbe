# The Product Status image: one image, run as api, projector or relay (see compose.yaml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY api api
COPY infra infra
RUN pip install --no-cache-dir .
ENV HOST=0.0.0.0 PORT=8003
USER nobody
EXPOSE 8003
ENTRYPOINT ["product-status"]
CMD ["serve"]
