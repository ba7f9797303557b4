"""Realistic manifests (the fields production Deployments and Services use) default, validate
and pass strict field validation without false positives."""

import copy

import pytest
import yaml

from controlplane.kinds import by_kind

MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  labels: {app.kubernetes.io/name: frontend, app.kubernetes.io/part-of: shop}
  annotations: {deployment.kubernetes.io/revision: "3"}
spec:
  replicas: 3
  revisionHistoryLimit: 5
  minReadySeconds: 5
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app.kubernetes.io/name: frontend}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: frontend}
      annotations: {prometheus.io/scrape: "true"}
    spec:
      serviceAccountName: frontend
      terminationGracePeriodSeconds: 45
      securityContext: {runAsNonRoot: true, runAsUser: 1000, fsGroup: 2000, seccompProfile: {type: RuntimeDefault}}
      nodeSelector: {kubernetes.io/os: linux}
      tolerations:
      - {key: node-role.kubernetes.io/edge, operator: Exists, effect: NoSchedule}
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [frontend]}]}
              topologyKey: kubernetes.io/hostname
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: frontend}}}
      initContainers:
      - name: migrate
        image: registry.example.com/shop/migrate:2.1
        command: ["/bin/migrate", "--up"]
        envFrom: [{configMapRef: {name: shop-config}}, {secretRef: {name: shop-secrets, optional: true}}]
      containers:
      - name: web
        image: registry.example.com/shop/frontend:2.1@sha256:0123456789abcdef
        imagePullPolicy: IfNotPresent
        args: ["--port=8080"]
        ports:
        - {name: http, containerPort: 8080, protocol: TCP}
        - {name: metrics, containerPort: 9090}
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: MEM_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
        - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
        resources:
          requests: {cpu: 250m, memory: 256Mi, ephemeral-storage: 1Gi}
          limits: {cpu: "1", memory: 512Mi}
        readinessProbe: {httpGet: {path: /healthz, port: http, httpHeaders: [{name: X-Probe, value: "1"}]}, initialDelaySeconds: 5, periodSeconds: 5}
        livenessProbe: {tcpSocket: {port: 8080}, failureThreshold: 5}
        startupProbe: {exec: {command: [cat, /tmp/started]}, failureThreshold: 30, periodSeconds: 2}
        lifecycle: {preStop: {sleep: {seconds: 5}}}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
        volumeMounts:
        - {name: cache, mountPath: /cache}
        - {name: config, mountPath: /etc/shop, readOnly: true}
        - {name: tls, mountPath: /etc/tls, readOnly: true}
      volumes:
      - {name: cache, emptyDir: {sizeLimit: 500Mi}}
      - {name: config, configMap: {name: shop-config, items: [{key: app.yaml, path: app.yaml}]}}
      - {name: tls, secret: {secretName: shop-tls, defaultMode: 0400}}
---
apiVersion: v1
kind: Service
metadata: {name: frontend}
spec:
  type: NodePort
  selector: {app.kubernetes.io/name: frontend}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: metrics, port: 9090, targetPort: 9090, appProtocol: http}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-config}
data: {app.yaml: "port: 8080\n", LOG_LEVEL: debug}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: kube-system}
spec: {holderIdentity: m1, leaseDurationSeconds: 15, acquireTime: "2026-01-01T00:00:00.000000Z", renewTime: "2026-01-01T00:00:10.123456Z", leaseTransitions: 2}
"""

DOCS = list(yaml.safe_load_all(MANIFESTS))


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d["kind"])
def test_realistic_manifest_is_clean(doc):
    doc = copy.deepcopy(doc)
    rt = by_kind(doc["apiVersion"], doc["kind"])
    if rt.namespaced:
        doc["metadata"].setdefault("namespace", "default")
    assert rt.unknown_fields(doc) == []
    rt.default(doc)
    assert rt.validate(doc) == []
    assert rt.unknown_fields(doc) == []


def test_a_typo_in_a_realistic_manifest_is_found():
    doc = copy.deepcopy(DOCS[0])
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 1
    doc["metadata"]["namespace"] = "default"
    assert by_kind("apps/v1", "Deployment").unknown_fields(doc) == [
        "spec.template.spec.containers[0].readinessProbe.httpGet.prot"]
