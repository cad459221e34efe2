# The webhook image the manifests run (manifests/base/deployment.yaml: image
# `gpu-rightsizer`, set with `kustomize edit set image gpu-rightsizer=REGISTRY/...:TAG`).
# Not built in CI here (no container engine on these machines); build it with
#   docker build -t REGISTRY/gpu-rightsizer:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The uid the Deployment's securityContext runs as; the root filesystem is read-only
# there, so nothing is written outside the /tmp emptyDir.
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["gpu-rightsizer"]
CMD ["serve", "--port", "8443"]
