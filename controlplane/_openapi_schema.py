"""A compact, hand-written schema of the fields our kinds use.

One table feeds three consumers: the OpenAPI documents kubectl reads (`explain`, `apply`),
strategic merge patch (list merge keys and strategies) and strict field validation
(`unknown_fields`). It covers the fields of these kinds, not the whole upstream API.

Notation for a field's type:
    "string" "integer" "int64" "number" "boolean" "byte"      primitives
    "Quantity" "IntOrString" "Time" "MicroTime"               Kubernetes scalar types
    "object"                                                  free-form (unknown fields kept)
    "{T}"                                                     map of string -> T
    "[T]"                                                     list of T
    any other word                                            a definition in DEFS
A field name ending in "!" is required. The optional third element is the patch behaviour:
    "merge:<key>"       list merged by key (x-kubernetes-patch-strategy merge, patch-merge-key)
    "merge"             primitive list merged as a set (finalizers)
    "retainKeys"        map whose absent keys are cleared when a patch sets others (strategy)
    "merge,retainKeys:<key>"                                  both (PodSpec.volumes)
    "atomic"            list replaced as a whole (also the default for lists)
"""

from __future__ import annotations

from typing import NamedTuple

CORE = "io.k8s.api.core.v1."
APPS = "io.k8s.api.apps.v1."
COORD = "io.k8s.api.coordination.v1."
AUTOSCALING = "io.k8s.api.autoscaling.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# Definition name prefixes by short name: everything not listed here is core/v1.
_PREFIX = {
    "ObjectMeta": META, "ListMeta": META, "OwnerReference": META, "ManagedFieldsEntry": META,
    "LabelSelector": META, "LabelSelectorRequirement": META, "Condition": META,
    "Deployment": APPS, "DeploymentSpec": APPS, "DeploymentStatus": APPS, "DeploymentStrategy": APPS,
    "RollingUpdateDeployment": APPS, "DeploymentCondition": APPS, "ReplicaSet": APPS,
    "ReplicaSetSpec": APPS, "ReplicaSetStatus": APPS, "ReplicaSetCondition": APPS,
    "Lease": COORD, "LeaseSpec": COORD,
    "Scale": AUTOSCALING, "ScaleSpec": AUTOSCALING, "ScaleStatus": AUTOSCALING,
}


def full_name(short: str) -> str:
    return _PREFIX.get(short, CORE) + short


class Field(NamedTuple):
    type: str
    description: str
    patch: str = ""


def _f(t: str, d: str, p: str = "") -> Field:
    return Field(t, d, p)


_KIND = _f("string", "Kind is a string value representing the REST resource this object represents. "
           "Servers may infer this from the endpoint the client submits requests to. In CamelCase.")
_API_VERSION = _f("string", "APIVersion defines the versioned schema of this representation of an object. "
                  "Servers should convert recognized schemas to the latest internal value.")
_METADATA = _f("ObjectMeta", "Standard object's metadata.")


def _top(spec: str | None, status: str | None, extra: dict | None = None) -> dict[str, Field]:
    out = {"apiVersion": _API_VERSION, "kind": _KIND, "metadata": _METADATA}
    if spec:
        out["spec"] = _f(spec, f"Spec defines the desired behavior of the object ({spec}).")
    if status:
        out["status"] = _f(status, "Most recently observed status. Read-only; populated by the system.")
    out.update(extra or {})
    return out


_TIME = "Time"
# In-tree and driver volume sources Kubernetes still accepts; manifests using them must decode.
LEGACY_VOLUME_SOURCES = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "gitRepo", "glusterfs", "iscsi", "photonPersistentDisk", "portworxVolume",
    "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
)

# name -> (description, fields)
DEFS: dict[str, tuple[str, dict[str, Field]]] = {
    # ---------------------------------------------------------------- meta/v1
    "ObjectMeta": ("ObjectMeta is metadata that all persisted resources must have, which includes all "
                   "objects users must create.", {
        "name": _f("string", "Name must be unique within a namespace. Required when creating resources, "
                   "although some resources may allow a client to request the generation of an appropriate "
                   "name automatically. Cannot be updated."),
        "generateName": _f("string", "GenerateName is an optional prefix, used by the server, to generate a "
                           "unique name ONLY IF the Name field has not been provided."),
        "namespace": _f("string", "Namespace defines the space within which each name must be unique. "
                        "Cannot be updated."),
        "uid": _f("string", "UID is the unique in time and space value for this object. Populated by the "
                  "system. Read-only."),
        "resourceVersion": _f("string", "An opaque value that represents the internal version of this object; "
                              "used for optimistic concurrency. Populated by the system. Read-only."),
        "generation": _f("int64", "A sequence number representing a specific generation of the desired state. "
                         "Populated by the system. Read-only."),
        "creationTimestamp": _f(_TIME, "CreationTimestamp is a timestamp representing the server time when "
                                "this object was created. Populated by the system. Read-only."),
        "deletionTimestamp": _f(_TIME, "RFC 3339 date and time at which this resource will be deleted. Set by "
                                "the server when a graceful deletion is requested. Read-only."),
        "deletionGracePeriodSeconds": _f("int64", "Number of seconds allowed for this object to gracefully "
                                         "terminate before it will be removed from the system."),
        "labels": _f("{string}", "Map of string keys and values that can be used to organize and categorize "
                     "(scope and select) objects."),
        "annotations": _f("{string}", "Annotations is an unstructured key value map stored with a resource "
                          "that may be set by external tools to store and retrieve arbitrary metadata."),
        "ownerReferences": _f("[OwnerReference]", "List of objects depended by this object. If ALL objects in "
                              "the list have been deleted, this object will be garbage collected.", "merge:uid"),
        "finalizers": _f("[string]", "Must be empty before the object is deleted from the registry. Each entry "
                         "is an identifier for the responsible component that will remove the entry.", "merge"),
        "managedFields": _f("[ManagedFieldsEntry]", "ManagedFields maps workflow-id and version to the set of "
                            "fields that are managed by that workflow."),
        "selfLink": _f("string", "Deprecated: selfLink is a legacy read-only field that is no longer populated."),
    }),
    "ListMeta": ("ListMeta describes metadata that synthetic resources must have.", {
        "resourceVersion": _f("string", "String that identifies the server's internal version of this object."),
        "continue": _f("string", "continue may be set if the user set a limit on the number of items returned."),
        "remainingItemCount": _f("int64", "The number of subsequent items in the list which are not included."),
        "selfLink": _f("string", "Deprecated."),
    }),
    "OwnerReference": ("OwnerReference contains enough information to let you identify an owning object.", {
        "apiVersion!": _f("string", "API version of the referent."),
        "kind!": _f("string", "Kind of the referent."),
        "name!": _f("string", "Name of the referent."),
        "uid!": _f("string", "UID of the referent."),
        "controller": _f("boolean", "If true, this reference points to the managing controller."),
        "blockOwnerDeletion": _f("boolean", "If true, AND if the owner has the \"foregroundDeletion\" finalizer, "
                                 "then the owner cannot be deleted from the key-value store until this reference "
                                 "is removed."),
    }),
    "ManagedFieldsEntry": ("ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the "
                           "resource that the fieldset applies to.", {
        "apiVersion": _f("string", "APIVersion defines the version of this resource that this field set applies to."),
        "fieldsType": _f("string", "FieldsType is the discriminator for the different fields format and version."),
        "fieldsV1": _f("object", "FieldsV1 holds the first JSON version format."),
        "manager": _f("string", "Manager is an identifier of the workflow managing these fields."),
        "operation": _f("string", "Operation is the type of operation which lead to this ManagedFieldsEntry."),
        "subresource": _f("string", "Subresource is the name of the subresource used to update that object."),
        "time": _f(_TIME, "Time is the timestamp of when the ManagedFields entry was added."),
    }),
    "LabelSelector": ("A label selector is a label query over a set of resources. An empty label selector "
                      "matches all objects. A null label selector matches no objects.", {
        "matchLabels": _f("{string}", "matchLabels is a map of {key,value} pairs. A single {key,value} is "
                          "equivalent to an element of matchExpressions whose key field is \"key\", the operator "
                          "is \"In\", and the values array contains only \"value\"."),
        "matchExpressions": _f("[LabelSelectorRequirement]", "matchExpressions is a list of label selector "
                               "requirements. The requirements are ANDed."),
    }),
    "LabelSelectorRequirement": ("A label selector requirement is a selector that contains values, a key, and "
                                 "an operator that relates the key and values.", {
        "key!": _f("string", "key is the label key that the selector applies to."),
        "operator!": _f("string", "operator represents a key's relationship to a set of values. Valid operators "
                        "are In, NotIn, Exists and DoesNotExist."),
        "values": _f("[string]", "values is an array of string values. If the operator is In or NotIn, the values "
                     "array must be non-empty. If the operator is Exists or DoesNotExist, the values array must be "
                     "empty."),
    }),
    "Condition": ("Condition contains details for one aspect of the current state of this API Resource.", {
        "type!": _f("string", "type of condition in CamelCase."),
        "status!": _f("string", "status of the condition, one of True, False, Unknown."),
        "observedGeneration": _f("int64", "observedGeneration represents the .metadata.generation that the "
                                 "condition was set based upon."),
        "lastTransitionTime!": _f(_TIME, "lastTransitionTime is the last time the condition transitioned from "
                                  "one status to another."),
        "reason!": _f("string", "reason contains a programmatic identifier indicating the reason for the "
                      "condition's last transition."),
        "message!": _f("string", "message is a human readable message indicating details about the transition."),
    }),
    # ---------------------------------------------------------------- core/v1 Pod
    "Pod": ("Pod is a collection of containers that can run on a host. This resource is created by clients "
            "and scheduled onto hosts.", _top("PodSpec", "PodStatus")),
    "PodSpec": ("PodSpec is a description of a pod.", {
        "containers!": _f("[Container]", "List of containers belonging to the pod. Containers cannot currently "
                          "be added or removed. There must be at least one container in a Pod. Cannot be updated.",
                          "merge:name"),
        "initContainers": _f("[Container]", "List of initialization containers belonging to the pod. Init "
                             "containers are executed in order prior to containers being started.", "merge:name"),
        "ephemeralContainers": _f("[object]", "List of ephemeral containers run in this pod.", "merge:name"),
        "volumes": _f("[Volume]", "List of volumes that can be mounted by containers belonging to the pod.",
                      "merge,retainKeys:name"),
        "restartPolicy": _f("string", "Restart policy for all containers within the pod. One of Always, "
                            "OnFailure, Never. Default to Always."),
        "terminationGracePeriodSeconds": _f("int64", "Optional duration in seconds the pod needs to terminate "
                                            "gracefully. Defaults to 30 seconds."),
        "activeDeadlineSeconds": _f("int64", "Optional duration in seconds the pod may be active on the node "
                                    "relative to StartTime before the system will actively try to mark it failed "
                                    "and kill associated containers."),
        "dnsPolicy": _f("string", "Set DNS policy for the pod. Defaults to \"ClusterFirst\". Valid values are "
                        "'ClusterFirstWithHostNet', 'ClusterFirst', 'Default' or 'None'."),
        "dnsConfig": _f("PodDNSConfig", "Specifies the DNS parameters of a pod."),
        "nodeSelector": _f("{string}", "NodeSelector is a selector which must be true for the pod to fit on a "
                           "node. Selector which must match a node's labels for the pod to be scheduled on that "
                           "node."),
        "serviceAccountName": _f("string", "ServiceAccountName is the name of the ServiceAccount to use to run "
                                 "this pod."),
        "serviceAccount": _f("string", "DeprecatedServiceAccount is a deprecated alias for ServiceAccountName."),
        "automountServiceAccountToken": _f("boolean", "AutomountServiceAccountToken indicates whether a service "
                                           "account token should be automatically mounted."),
        "nodeName": _f("string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is "
                       "a candidate for scheduling by the scheduler defined in schedulerName."),
        "hostNetwork": _f("boolean", "Host networking requested for this pod. Use the host's network namespace."),
        "hostPID": _f("boolean", "Use the host's pid namespace."),
        "hostIPC": _f("boolean", "Use the host's ipc namespace."),
        "shareProcessNamespace": _f("boolean", "Share a single process namespace between all of the containers "
                                    "in a pod."),
        "securityContext": _f("PodSecurityContext", "SecurityContext holds pod-level security attributes and "
                              "common container settings."),
        "imagePullSecrets": _f("[LocalObjectReference]", "ImagePullSecrets is an optional list of references to "
                               "secrets in the same namespace to use for pulling any of the images used by this "
                               "PodSpec.", "merge:name"),
        "hostname": _f("string", "Specifies the hostname of the Pod. If not specified, the pod's hostname will "
                       "be set to a system-defined value."),
        "subdomain": _f("string", "If specified, the fully qualified Pod hostname will be "
                        "\"<hostname>.<subdomain>.<pod namespace>.svc.<cluster domain>\"."),
        "affinity": _f("Affinity", "If specified, the pod's scheduling constraints."),
        "schedulerName": _f("string", "If specified, the pod will be dispatched by specified scheduler. If not "
                            "specified, the pod will be dispatched by default scheduler."),
        "tolerations": _f("[Toleration]", "If specified, the pod's tolerations."),
        "hostAliases": _f("[HostAlias]", "HostAliases is an optional list of hosts and IPs that will be injected "
                          "into the pod's hosts file if specified.", "merge:ip"),
        "priorityClassName": _f("string", "If specified, indicates the pod's priority."),
        "priority": _f("integer", "The priority value. The higher the value, the higher the priority."),
        "preemptionPolicy": _f("string", "PreemptionPolicy is the Policy for preempting pods with lower "
                               "priority. One of Never, PreemptLowerPriority."),
        "readinessGates": _f("[PodReadinessGate]", "If specified, all readiness gates will be evaluated for pod "
                             "readiness."),
        "runtimeClassName": _f("string", "RuntimeClassName refers to a RuntimeClass object in the node.k8s.io "
                               "group, which should be used to run this pod."),
        "enableServiceLinks": _f("boolean", "EnableServiceLinks indicates whether information about services "
                                 "should be injected into pod's environment variables. Defaults to true."),
        "overhead": _f("{Quantity}", "Overhead represents the resource overhead associated with running a pod "
                       "for a given RuntimeClass."),
        "topologySpreadConstraints": _f("[object]", "TopologySpreadConstraints describes how a group of pods "
                                        "ought to spread across topology domains.", "merge:topologyKey"),
        "setHostnameAsFQDN": _f("boolean", "If true the pod's hostname will be configured as the pod's FQDN."),
        "os": _f("object", "Specifies the OS of the containers in the pod."),
        "hostUsers": _f("boolean", "Use the host's user namespace."),
        "schedulingGates": _f("[object]", "SchedulingGates is an opaque list of values that if specified will "
                              "block scheduling the pod.", "merge:name"),
        "resourceClaims": _f("[object]", "ResourceClaims defines which ResourceClaims must be allocated and "
                             "reserved before the Pod is allowed to start.", "merge,retainKeys:name"),
        "resources": _f("ResourceRequirements", "Resources is the total amount of CPU and Memory resources "
                        "required by all containers in the pod."),
    }),
    "Container": ("A single application container that you want to run within a pod.", {
        "name!": _f("string", "Name of the container specified as a DNS_LABEL. Each container in a pod must have "
                    "a unique name (DNS_LABEL). Cannot be updated."),
        "image": _f("string", "Container image name. This field is optional to allow higher level config "
                    "management to default or override container images in workload controllers like "
                    "Deployments and StatefulSets."),
        "command": _f("[string]", "Entrypoint array. Not executed within a shell. The container image's "
                      "ENTRYPOINT is used if this is not provided."),
        "args": _f("[string]", "Arguments to the entrypoint. The container image's CMD is used if this is not "
                   "provided."),
        "workingDir": _f("string", "Container's working directory. If not specified, the container runtime's "
                         "default will be used."),
        "ports": _f("[ContainerPort]", "List of ports to expose from the container. Not specifying a port here "
                    "DOES NOT prevent that port from being exposed.", "merge:containerPort"),
        "envFrom": _f("[EnvFromSource]", "List of sources to populate environment variables in the container."),
        "env": _f("[EnvVar]", "List of environment variables to set in the container. Cannot be updated.",
                  "merge:name"),
        "resources": _f("ResourceRequirements", "Compute Resources required by this container. Cannot be updated."),
        "resizePolicy": _f("[object]", "Resources resize policy for the container."),
        "restartPolicy": _f("string", "RestartPolicy defines the restart behavior of individual containers in a "
                            "pod. Only \"Always\" is allowed, for init containers (sidecars)."),
        "volumeMounts": _f("[VolumeMount]", "Pod volumes to mount into the container's filesystem. Cannot be "
                           "updated.", "merge:mountPath"),
        "volumeDevices": _f("[object]", "volumeDevices is the list of block devices to be used by the container.",
                            "merge:devicePath"),
        "livenessProbe": _f("Probe", "Periodic probe of container liveness. Container will be restarted if the "
                            "probe fails. Cannot be updated."),
        "readinessProbe": _f("Probe", "Periodic probe of container service readiness. Container will be removed "
                             "from service endpoints if the probe fails. Cannot be updated."),
        "startupProbe": _f("Probe", "StartupProbe indicates that the Pod has successfully initialized. If "
                           "specified, no other probes are executed until this completes successfully."),
        "lifecycle": _f("Lifecycle", "Actions that the management system should take in response to container "
                        "lifecycle events. Cannot be updated."),
        "terminationMessagePath": _f("string", "Optional: Path at which the file to which the container's "
                                     "termination message will be written is mounted into the container's "
                                     "filesystem. Defaults to /dev/termination-log."),
        "terminationMessagePolicy": _f("string", "Indicate how the termination message should be populated. "
                                       "File or FallbackToLogsOnError. Defaults to File."),
        "imagePullPolicy": _f("string", "Image pull policy. One of Always, Never, IfNotPresent. Defaults to "
                              "Always if :latest tag is specified, or IfNotPresent otherwise."),
        "securityContext": _f("SecurityContext", "SecurityContext defines the security options the container "
                              "should be run with."),
        "stdin": _f("boolean", "Whether this container should allocate a buffer for stdin in the container "
                    "runtime."),
        "stdinOnce": _f("boolean", "Whether the container runtime should close the stdin channel after it has "
                        "been opened by a single attach."),
        "tty": _f("boolean", "Whether this container should allocate a TTY for itself."),
    }),
    "ContainerPort": ("ContainerPort represents a network port in a single container.", {
        "name": _f("string", "If specified, this must be an IANA_SVC_NAME and unique within the pod. Each named "
                   "port in a pod must have a unique name."),
        "containerPort!": _f("integer", "Number of port to expose on the pod's IP address. This must be a valid "
                             "port number, 0 < x < 65536."),
        "hostPort": _f("integer", "Number of port to expose on the host. If specified, this must be a valid port "
                       "number, 0 < x < 65536."),
        "protocol": _f("string", "Protocol for port. Must be UDP, TCP, or SCTP. Defaults to \"TCP\"."),
        "hostIP": _f("string", "What host IP to bind the external port to."),
    }),
    "EnvVar": ("EnvVar represents an environment variable present in a Container.", {
        "name!": _f("string", "Name of the environment variable."),
        "value": _f("string", "Variable references $(VAR_NAME) are expanded using the previously defined "
                    "environment variables in the container and any service environment variables."),
        "valueFrom": _f("EnvVarSource", "Source for the environment variable's value. Cannot be used if value "
                        "is not empty."),
    }),
    "EnvVarSource": ("EnvVarSource represents a source for the value of an EnvVar.", {
        "fieldRef": _f("ObjectFieldSelector", "Selects a field of the pod: supports metadata.name, "
                       "metadata.namespace, metadata.labels['<KEY>'], spec.nodeName, status.hostIP, status.podIP."),
        "resourceFieldRef": _f("ResourceFieldSelector", "Selects a resource of the container."),
        "configMapKeyRef": _f("ConfigMapKeySelector", "Selects a key of a ConfigMap."),
        "secretKeyRef": _f("SecretKeySelector", "Selects a key of a secret in the pod's namespace."),
    }),
    "ObjectFieldSelector": ("ObjectFieldSelector selects an APIVersioned field of an object.", {
        "apiVersion": _f("string", "Version of the schema the FieldPath is written in terms of, defaults to \"v1\"."),
        "fieldPath!": _f("string", "Path of the field to select in the specified API version."),
    }),
    "ResourceFieldSelector": ("ResourceFieldSelector represents container resources (cpu, memory) and their "
                              "output format.", {
        "containerName": _f("string", "Container name: required for volumes, optional for env vars."),
        "resource!": _f("string", "Required: resource to select."),
        "divisor": _f("Quantity", "Specifies the output format of the exposed resources, defaults to \"1\"."),
    }),
    "ConfigMapKeySelector": ("Selects a key from a ConfigMap.", {
        "name": _f("string", "Name of the referent."),
        "key!": _f("string", "The key to select."),
        "optional": _f("boolean", "Specify whether the ConfigMap or its key must be defined."),
    }),
    "SecretKeySelector": ("SecretKeySelector selects a key of a Secret.", {
        "name": _f("string", "Name of the referent."),
        "key!": _f("string", "The key of the secret to select from. Must be a valid secret key."),
        "optional": _f("boolean", "Specify whether the Secret or its key must be defined."),
    }),
    "EnvFromSource": ("EnvFromSource represents the source of a set of ConfigMaps or Secrets.", {
        "prefix": _f("string", "Optional text to prepend to the name of each environment variable."),
        "configMapRef": _f("LocalObjectReferenceOptional", "The ConfigMap to select from."),
        "secretRef": _f("LocalObjectReferenceOptional", "The Secret to select from."),
    }),
    "LocalObjectReferenceOptional": ("A reference to a ConfigMap or Secret in the pod's namespace.", {
        "name": _f("string", "Name of the referent."),
        "optional": _f("boolean", "Specify whether the referent must be defined."),
    }),
    "LocalObjectReference": ("LocalObjectReference contains enough information to let you locate the "
                             "referenced object inside the same namespace.", {
        "name": _f("string", "Name of the referent."),
    }),
    "ResourceRequirements": ("ResourceRequirements describes the compute resource requirements.", {
        "limits": _f("{Quantity}", "Limits describes the maximum amount of compute resources allowed."),
        "requests": _f("{Quantity}", "Requests describes the minimum amount of compute resources required. If "
                       "Requests is omitted for a container, it defaults to Limits if that is explicitly "
                       "specified."),
        "claims": _f("[object]", "Claims lists the names of resources, defined in spec.resourceClaims, that are "
                     "used by this container."),
    }),
    "VolumeMount": ("VolumeMount describes a mounting of a Volume within a container.", {
        "name!": _f("string", "This must match the Name of a Volume."),
        "mountPath!": _f("string", "Path within the container at which the volume should be mounted. Must not "
                         "contain ':'."),
        "readOnly": _f("boolean", "Mounted read-only if true, read-write otherwise (false or unspecified). "
                       "Defaults to false."),
        "subPath": _f("string", "Path within the volume from which the container's volume should be mounted. "
                      "Defaults to \"\" (volume's root)."),
        "subPathExpr": _f("string", "Expanded path within the volume from which the container's volume should "
                          "be mounted."),
        "mountPropagation": _f("string", "mountPropagation determines how mounts are propagated from the host to "
                               "container and the other way around."),
        "recursiveReadOnly": _f("string", "RecursiveReadOnly specifies whether read-only mounts should be handled "
                                "recursively."),
    }),
    "Volume": ("Volume represents a named volume in a pod that may be accessed by any container in the pod.", {
        "name!": _f("string", "name of the volume. Must be a DNS_LABEL and unique within the pod."),
        "emptyDir": _f("EmptyDirVolumeSource", "emptyDir represents a temporary directory that shares a pod's "
                       "lifetime."),
        "hostPath": _f("HostPathVolumeSource", "hostPath represents a pre-existing file or directory on the host "
                       "machine that is directly exposed to the container."),
        "configMap": _f("ConfigMapVolumeSource", "configMap represents a configMap that should populate this "
                        "volume."),
        "secret": _f("SecretVolumeSource", "secret represents a secret that should populate this volume."),
        "persistentVolumeClaim": _f("object", "persistentVolumeClaimVolumeSource represents a reference to a "
                                    "PersistentVolumeClaim in the same namespace."),
        "projected": _f("object", "projected items for all in one resources secrets, configmaps, and downward API."),
        "downwardAPI": _f("object", "downwardAPI represents downward API about the pod that should populate this "
                          "volume."),
        "nfs": _f("object", "nfs represents an NFS mount on the host that shares a pod's lifetime."),
        "csi": _f("object", "csi (Container Storage Interface) represents ephemeral storage that is handled by "
                  "certain external CSI drivers."),
        "ephemeral": _f("object", "ephemeral represents a volume that is handled by a cluster storage driver."),
        "image": _f("object", "image represents an OCI object (a container image or artifact) pulled and "
                    "mounted on the kubelet's host machine."),
        **{name: _f("object", f"{name}: a storage-specific volume source (accepted, not interpreted by "
                    "edgeplane).") for name in LEGACY_VOLUME_SOURCES},
    }),
    "EmptyDirVolumeSource": ("Represents an empty directory for a pod.", {
        "medium": _f("string", "medium represents what type of storage medium should back this directory. "
                     "The default is \"\" which means to use the node's default medium."),
        "sizeLimit": _f("Quantity", "sizeLimit is the total amount of local storage required for this EmptyDir "
                        "volume."),
    }),
    "HostPathVolumeSource": ("Represents a host path mapped into a pod.", {
        "path!": _f("string", "path of the directory on the host. If the path is a symlink, it will follow the "
                    "link to the real path."),
        "type": _f("string", "type for HostPath Volume. Defaults to \"\"."),
    }),
    "ConfigMapVolumeSource": ("Adapts a ConfigMap into a volume.", {
        "name": _f("string", "Name of the referent."),
        "items": _f("[KeyToPath]", "items if unspecified, each key-value pair in the Data field of the "
                    "referenced ConfigMap will be projected into the volume as a file whose name is the key and "
                    "content is the value."),
        "defaultMode": _f("integer", "defaultMode is optional: mode bits used to set permissions on created "
                          "files by default. Defaults to 0644."),
        "optional": _f("boolean", "optional specify whether the ConfigMap or its keys must be defined."),
    }),
    "SecretVolumeSource": ("Adapts a Secret into a volume.", {
        "secretName": _f("string", "secretName is the name of the secret in the pod's namespace to use."),
        "items": _f("[KeyToPath]", "items If unspecified, each key-value pair in the Data field of the "
                    "referenced Secret will be projected into the volume as a file."),
        "defaultMode": _f("integer", "defaultMode is Optional: mode bits used to set permissions on created "
                          "files by default. Defaults to 0644."),
        "optional": _f("boolean", "optional field specify whether the Secret or its keys must be defined."),
    }),
    "KeyToPath": ("Maps a string key to a path within a volume.", {
        "key!": _f("string", "key is the key to project."),
        "path!": _f("string", "path is the relative path of the file to map the key to."),
        "mode": _f("integer", "mode is Optional: mode bits used to set permissions on this file."),
    }),
    "Probe": ("Probe describes a health check to be performed against a container to determine whether it is "
              "alive or ready to receive traffic.", {
        "exec": _f("ExecAction", "Exec specifies a command to execute in the container."),
        "httpGet": _f("HTTPGetAction", "HTTPGet specifies an HTTP GET request to perform."),
        "tcpSocket": _f("TCPSocketAction", "TCPSocket specifies a connection to a TCP port."),
        "grpc": _f("GRPCAction", "GRPC specifies a GRPC HealthCheckRequest."),
        "initialDelaySeconds": _f("integer", "Number of seconds after the container has started before liveness "
                                  "probes are initiated."),
        "timeoutSeconds": _f("integer", "Number of seconds after which the probe times out. Defaults to 1 "
                             "second. Minimum value is 1."),
        "periodSeconds": _f("integer", "How often (in seconds) to perform the probe. Default to 10 seconds. "
                            "Minimum value is 1."),
        "successThreshold": _f("integer", "Minimum consecutive successes for the probe to be considered "
                               "successful after having failed. Defaults to 1. Must be 1 for liveness and startup."),
        "failureThreshold": _f("integer", "Minimum consecutive failures for the probe to be considered failed "
                               "after having succeeded. Defaults to 3. Minimum value is 1."),
        "terminationGracePeriodSeconds": _f("int64", "Optional duration in seconds the pod needs to terminate "
                                            "gracefully upon probe failure."),
    }),
    "ExecAction": ("ExecAction describes a \"run in container\" action.", {
        "command": _f("[string]", "Command is the command line to execute inside the container, the working "
                      "directory for the command is root ('/') in the container's filesystem."),
    }),
    "HTTPGetAction": ("HTTPGetAction describes an action based on HTTP Get requests.", {
        "path": _f("string", "Path to access on the HTTP server."),
        "port!": _f("IntOrString", "Name or number of the port to access on the container. Number must be in the "
                    "range 1 to 65535. Name must be an IANA_SVC_NAME."),
        "host": _f("string", "Host name to connect to, defaults to the pod IP."),
        "scheme": _f("string", "Scheme to use for connecting to the host. Defaults to HTTP."),
        "httpHeaders": _f("[HTTPHeader]", "Custom headers to set in the request. HTTP allows repeated headers."),
    }),
    "HTTPHeader": ("HTTPHeader describes a custom header to be used in HTTP probes", {
        "name!": _f("string", "The header field name."),
        "value!": _f("string", "The header field value"),
    }),
    "TCPSocketAction": ("TCPSocketAction describes an action based on opening a socket", {
        "port!": _f("IntOrString", "Number or name of the port to access on the container. Number must be in "
                    "the range 1 to 65535. Name must be an IANA_SVC_NAME."),
        "host": _f("string", "Optional: Host name to connect to, defaults to the pod IP."),
    }),
    "GRPCAction": ("GRPCAction specifies an action involving a GRPC service.", {
        "port!": _f("integer", "Port number of the gRPC service. Number must be in the range 1 to 65535."),
        "service": _f("string", "Service is the name of the service to place in the gRPC HealthCheckRequest."),
    }),
    "Lifecycle": ("Lifecycle describes actions that the management system should take in response to container "
                  "lifecycle events.", {
        "postStart": _f("LifecycleHandler", "PostStart is called immediately after a container is created."),
        "preStop": _f("LifecycleHandler", "PreStop is called immediately before a container is terminated due "
                      "to an API request or management event."),
        "stopSignal": _f("string", "StopSignal defines which signal will be sent to a container when it is "
                         "being stopped."),
    }),
    "LifecycleHandler": ("LifecycleHandler defines a specific action that should be taken in a lifecycle hook.", {
        "exec": _f("ExecAction", "Exec specifies a command to execute in the container."),
        "httpGet": _f("HTTPGetAction", "HTTPGet specifies an HTTP GET request to perform."),
        "tcpSocket": _f("TCPSocketAction", "Deprecated. TCPSocket is NOT supported as a LifecycleHandler."),
        "sleep": _f("SleepAction", "Sleep represents a duration that the container should sleep."),
    }),
    "SleepAction": ("SleepAction describes a \"sleep\" action.", {
        "seconds!": _f("int64", "Seconds is the number of seconds to sleep."),
    }),
    "SecurityContext": ("SecurityContext holds security configuration that will be applied to a container.", {
        "privileged": _f("boolean", "Run container in privileged mode. Defaults to false."),
        "runAsUser": _f("int64", "The UID to run the entrypoint of the container process."),
        "runAsGroup": _f("int64", "The GID to run the entrypoint of the container process."),
        "runAsNonRoot": _f("boolean", "Indicates that the container must run as a non-root user."),
        "readOnlyRootFilesystem": _f("boolean", "Whether this container has a read-only root filesystem."),
        "allowPrivilegeEscalation": _f("boolean", "AllowPrivilegeEscalation controls whether a process can gain "
                                       "more privileges than its parent process."),
        "capabilities": _f("Capabilities", "The capabilities to add/drop when running containers."),
        "procMount": _f("string", "procMount denotes the type of proc mount to use for the containers."),
        "seLinuxOptions": _f("object", "The SELinux context to be applied to the container."),
        "seccompProfile": _f("object", "The seccomp options to use by this container."),
        "appArmorProfile": _f("object", "appArmorProfile is the AppArmor options to use by this container."),
        "windowsOptions": _f("object", "The Windows specific settings applied to all containers."),
    }),
    "Capabilities": ("Adds and removes POSIX capabilities from running containers.", {
        "add": _f("[string]", "Added capabilities"),
        "drop": _f("[string]", "Removed capabilities"),
    }),
    "PodSecurityContext": ("PodSecurityContext holds pod-level security attributes and common container "
                           "settings.", {
        "runAsUser": _f("int64", "The UID to run the entrypoint of the container process."),
        "runAsGroup": _f("int64", "The GID to run the entrypoint of the container process."),
        "runAsNonRoot": _f("boolean", "Indicates that the container must run as a non-root user."),
        "fsGroup": _f("int64", "A special supplemental group that applies to all containers in a pod."),
        "fsGroupChangePolicy": _f("string", "fsGroupChangePolicy defines behavior of changing ownership and "
                                  "permission of the volume before being exposed inside Pod."),
        "supplementalGroups": _f("[int64]", "A list of groups applied to the first process run in each container."),
        "supplementalGroupsPolicy": _f("string", "Defines how supplemental groups of the first container "
                                       "processes are calculated."),
        "sysctls": _f("[object]", "Sysctls hold a list of namespaced sysctls used for the pod."),
        "seLinuxOptions": _f("object", "The SELinux context to be applied to all containers."),
        "seccompProfile": _f("object", "The seccomp options to use by the containers in this pod."),
        "appArmorProfile": _f("object", "appArmorProfile is the AppArmor options to use by the containers."),
        "windowsOptions": _f("object", "The Windows specific settings applied to all containers."),
        "seLinuxChangePolicy": _f("string", "seLinuxChangePolicy defines how the container's SELinux label is "
                                  "applied to all volumes used by the Pod."),
    }),
    "Toleration": ("The pod this Toleration is attached to tolerates any taint that matches the triple "
                   "<key,value,effect> using the matching operator <operator>.", {
        "key": _f("string", "Key is the taint key that the toleration applies to. Empty means match all taint "
                  "keys. If the key is empty, operator must be Exists."),
        "operator": _f("string", "Operator represents a key's relationship to the value. Valid operators are "
                       "Exists and Equal. Defaults to Equal."),
        "value": _f("string", "Value is the taint value the toleration matches to. If the operator is Exists, "
                    "the value should be empty."),
        "effect": _f("string", "Effect indicates the taint effect to match. Empty means match all taint "
                     "effects. When specified, allowed values are NoSchedule, PreferNoSchedule and NoExecute."),
        "tolerationSeconds": _f("int64", "TolerationSeconds represents the period of time the toleration (which "
                                "must be of effect NoExecute) tolerates the taint."),
    }),
    "Affinity": ("Affinity is a group of affinity scheduling rules.", {
        "nodeAffinity": _f("NodeAffinity", "Describes node affinity scheduling rules for the pod."),
        "podAffinity": _f("PodAffinity", "Describes pod affinity scheduling rules (e.g. co-locate this pod in "
                          "the same node, zone, etc. as some other pod(s))."),
        "podAntiAffinity": _f("PodAntiAffinity", "Describes pod anti-affinity scheduling rules (e.g. avoid "
                              "putting this pod in the same node, zone, etc. as some other pod(s))."),
    }),
    "NodeAffinity": ("Node affinity is a group of node affinity scheduling rules.", {
        "requiredDuringSchedulingIgnoredDuringExecution": _f(
            "NodeSelector", "If the affinity requirements specified by this field are not met at scheduling "
            "time, the pod will not be scheduled onto the node."),
        "preferredDuringSchedulingIgnoredDuringExecution": _f(
            "[PreferredSchedulingTerm]", "The scheduler will prefer to schedule pods to nodes that satisfy the "
            "affinity expressions specified by this field, but it may choose a node that violates one or more "
            "of the expressions."),
    }),
    "NodeSelector": ("A node selector represents the union of the results of one or more label queries over a "
                     "set of nodes; that is, it represents the OR of the selectors represented by the node "
                     "selector terms.", {
        "nodeSelectorTerms!": _f("[NodeSelectorTerm]", "Required. A list of node selector terms. The terms are "
                                 "ORed."),
    }),
    "NodeSelectorTerm": ("A null or empty node selector term matches no objects. The requirements of them are "
                         "ANDed.", {
        "matchExpressions": _f("[NodeSelectorRequirement]", "A list of node selector requirements by node's "
                               "labels."),
        "matchFields": _f("[NodeSelectorRequirement]", "A list of node selector requirements by node's fields."),
    }),
    "NodeSelectorRequirement": ("A node selector requirement is a selector that contains values, a key, and an "
                                "operator that relates the key and values.", {
        "key!": _f("string", "The label key that the selector applies to."),
        "operator!": _f("string", "Represents a key's relationship to a set of values. Valid operators are In, "
                        "NotIn, Exists, DoesNotExist. Gt, and Lt."),
        "values": _f("[string]", "An array of string values. If the operator is In or NotIn, the values array "
                     "must be non-empty. If the operator is Gt or Lt, the values array must have a single "
                     "element, which will be interpreted as an integer."),
    }),
    "PreferredSchedulingTerm": ("An empty preferred scheduling term matches all objects with implicit weight 0 "
                                "(i.e. it's a no-op).", {
        "weight!": _f("integer", "Weight associated with matching the corresponding nodeSelectorTerm, in the "
                      "range 1-100."),
        "preference!": _f("NodeSelectorTerm", "A node selector term, associated with the corresponding weight."),
    }),
    "PodAffinity": ("Pod affinity is a group of inter pod affinity scheduling rules.", {
        "requiredDuringSchedulingIgnoredDuringExecution": _f(
            "[PodAffinityTerm]", "If the affinity requirements specified by this field are not met at "
            "scheduling time, the pod will not be scheduled onto the node."),
        "preferredDuringSchedulingIgnoredDuringExecution": _f(
            "[WeightedPodAffinityTerm]", "The scheduler will prefer to schedule pods to nodes that satisfy the "
            "affinity expressions specified by this field."),
    }),
    "PodAntiAffinity": ("Pod anti affinity is a group of inter pod anti affinity scheduling rules.", {
        "requiredDuringSchedulingIgnoredDuringExecution": _f(
            "[PodAffinityTerm]", "If the anti-affinity requirements specified by this field are not met at "
            "scheduling time, the pod will not be scheduled onto the node."),
        "preferredDuringSchedulingIgnoredDuringExecution": _f(
            "[WeightedPodAffinityTerm]", "The scheduler will prefer to schedule pods to nodes that satisfy the "
            "anti-affinity expressions specified by this field."),
    }),
    "PodAffinityTerm": ("Defines a set of pods (namely those matching the labelSelector relative to the given "
                        "namespace(s)) that this pod should be co-located (affinity) or not co-located "
                        "(anti-affinity) with.", {
        "labelSelector": _f("LabelSelector", "A label query over a set of resources, in this case pods."),
        "namespaceSelector": _f("LabelSelector", "A label query over the set of namespaces that the term applies "
                                "to."),
        "namespaces": _f("[string]", "namespaces specifies a static list of namespace names that the term "
                         "applies to."),
        "topologyKey!": _f("string", "This pod should be co-located (affinity) or not co-located (anti-affinity) "
                           "with the pods matching the labelSelector in the specified namespaces, where "
                           "co-located is defined as running on a node whose value of the label with key "
                           "topologyKey matches that of any node on which any of the selected pods is running."),
        "matchLabelKeys": _f("[string]", "MatchLabelKeys is a set of pod label keys to select which pods will be "
                             "taken into consideration."),
        "mismatchLabelKeys": _f("[string]", "MismatchLabelKeys is a set of pod label keys to select which pods "
                                "will be taken into consideration."),
    }),
    "WeightedPodAffinityTerm": ("The weights of all of the matched WeightedPodAffinityTerm fields are added "
                                "per-node to find the most preferred node(s)", {
        "weight!": _f("integer", "weight associated with matching the corresponding podAffinityTerm, in the "
                      "range 1-100."),
        "podAffinityTerm!": _f("PodAffinityTerm", "Required. A pod affinity term, associated with the "
                               "corresponding weight."),
    }),
    "PodDNSConfig": ("PodDNSConfig defines the DNS parameters of a pod in addition to those generated from "
                     "DNSPolicy.", {
        "nameservers": _f("[string]", "A list of DNS name server IP addresses."),
        "searches": _f("[string]", "A list of DNS search domains for host-name lookup."),
        "options": _f("[object]", "A list of DNS resolver options."),
    }),
    "HostAlias": ("HostAlias holds the mapping between IP and hostnames that will be injected as an entry in "
                  "the pod's hosts file.", {
        "ip!": _f("string", "IP address of the host file entry."),
        "hostnames": _f("[string]", "Hostnames for the above IP address."),
    }),
    "PodReadinessGate": ("PodReadinessGate contains the reference to a pod condition", {
        "conditionType!": _f("string", "ConditionType refers to a condition in the pod's condition list with "
                             "matching type."),
    }),
    "PodStatus": ("PodStatus represents information about the status of a pod. Status may trail the actual "
                  "state of a system, especially if the node that hosts the pod cannot contact the control "
                  "plane.", {
        "phase": _f("string", "The phase of a Pod is a simple, high-level summary of where the Pod is in its "
                    "lifecycle: Pending, Running, Succeeded, Failed or Unknown."),
        "conditions": _f("[PodCondition]", "Current service state of pod.", "merge:type"),
        "message": _f("string", "A human readable message indicating details about why the pod is in this "
                      "condition."),
        "reason": _f("string", "A brief CamelCase message indicating details about why the pod is in this state. "
                     "e.g. 'Evicted'"),
        "nominatedNodeName": _f("string", "nominatedNodeName is set only when this pod preempts other pods on "
                                "the node."),
        "hostIP": _f("string", "hostIP holds the IP address of the host to which the pod is assigned."),
        "hostIPs": _f("[HostIP]", "hostIPs holds the IP addresses allocated to the host.", "merge:ip"),
        "podIP": _f("string", "podIP address allocated to the pod. Routable at least within the cluster."),
        "podIPs": _f("[PodIP]", "podIPs holds the IP addresses allocated to the pod.", "merge:ip"),
        "startTime": _f(_TIME, "RFC 3339 date and time at which the object was acknowledged by the Kubelet."),
        "initContainerStatuses": _f("[ContainerStatus]", "Statuses of init containers in this pod."),
        "containerStatuses": _f("[ContainerStatus]", "Statuses of containers in this pod."),
        "ephemeralContainerStatuses": _f("[ContainerStatus]", "Statuses for any ephemeral containers."),
        "qosClass": _f("string", "The Quality of Service (QOS) classification assigned to the pod based on "
                       "resource requirements: Guaranteed, Burstable or BestEffort."),
        "resize": _f("string", "Status of resources resize desired for pod's containers."),
        "observedGeneration": _f("int64", "If set, this represents the .metadata.generation that the pod "
                                 "status was set based upon."),
        "resourceClaimStatuses": _f("[object]", "Status of resource claims.", "merge,retainKeys:name"),
    }),
    "PodCondition": ("PodCondition contains details for the current condition of this pod.", {
        "type!": _f("string", "Type is the type of the condition, e.g. PodScheduled, Initialized, "
                    "ContainersReady, Ready."),
        "status!": _f("string", "Status is the status of the condition. Can be True, False, Unknown."),
        "lastProbeTime": _f(_TIME, "Last time we probed the condition."),
        "lastTransitionTime": _f(_TIME, "Last time the condition transitioned from one status to another."),
        "reason": _f("string", "Unique, one-word, CamelCase reason for the condition's last transition."),
        "message": _f("string", "Human-readable message indicating details about last transition."),
        "observedGeneration": _f("int64", "The .metadata.generation the condition was set based upon."),
    }),
    "PodIP": ("PodIP represents a single IP address allocated to the pod.", {
        "ip!": _f("string", "IP is the IP address assigned to the pod"),
    }),
    "HostIP": ("HostIP represents a single IP address allocated to the host.", {
        "ip!": _f("string", "IP is the IP address assigned to the host"),
    }),
    "ContainerStatus": ("ContainerStatus contains details for the current status of this container.", {
        "name!": _f("string", "Name is a DNS_LABEL representing the unique name of the container."),
        "state": _f("ContainerState", "State holds details about the container's current condition."),
        "lastState": _f("ContainerState", "LastTerminationState holds the last termination state of the "
                        "container to help debug container crashes and restarts."),
        "ready!": _f("boolean", "Ready specifies whether the container is currently passing its readiness check."),
        "restartCount!": _f("integer", "RestartCount holds the number of times the container has been restarted."),
        "image!": _f("string", "Image is the name of container image that the container is running."),
        "imageID!": _f("string", "ImageID is the image ID of the container's image."),
        "containerID": _f("string", "ContainerID is the ID of the container in the format "
                          "'<type>://<container_id>'."),
        "started": _f("boolean", "Started indicates whether the container has finished its postStart lifecycle "
                      "hook and passed its startup probe."),
        "allocatedResources": _f("{Quantity}", "AllocatedResources represents the compute resources allocated "
                                 "for this container by the node."),
        "resources": _f("ResourceRequirements", "Resources represents the compute resource requests and limits "
                        "that have been successfully enacted on the running container."),
        "volumeMounts": _f("[object]", "Status of volume mounts.", "merge:mountPath"),
        "user": _f("object", "User represents user identity information initially attached to the first "
                   "process of the container"),
        "allocatedResourcesStatus": _f("[object]", "AllocatedResourcesStatus represents the status of various "
                                       "resources allocated for this Pod.", "merge:name"),
        "stopSignal": _f("string", "StopSignal reports the effective stop signal for this container"),
    }),
    "ContainerState": ("ContainerState holds a possible state of container. Only one of its members may be "
                       "specified. If none of them is specified, the default one is ContainerStateWaiting.", {
        "waiting": _f("ContainerStateWaiting", "Details about a waiting container"),
        "running": _f("ContainerStateRunning", "Details about a running container"),
        "terminated": _f("ContainerStateTerminated", "Details about a terminated container"),
    }),
    "ContainerStateWaiting": ("ContainerStateWaiting is a waiting state of a container.", {
        "reason": _f("string", "(brief) reason the container is not yet running, e.g. ContainerCreating, "
                     "ImagePullBackOff, CrashLoopBackOff."),
        "message": _f("string", "Message regarding why the container is not yet running."),
    }),
    "ContainerStateRunning": ("ContainerStateRunning is a running state of a container.", {
        "startedAt": _f(_TIME, "Time at which the container was last (re-)started"),
    }),
    "ContainerStateTerminated": ("ContainerStateTerminated is a terminated state of a container.", {
        "exitCode!": _f("integer", "Exit status from the last termination of the container"),
        "signal": _f("integer", "Signal from the last termination of the container"),
        "reason": _f("string", "(brief) reason from the last termination of the container"),
        "message": _f("string", "Message regarding the last termination of the container"),
        "startedAt": _f(_TIME, "Time at which previous execution of the container started"),
        "finishedAt": _f(_TIME, "Time at which the container last terminated"),
        "containerID": _f("string", "Container's ID in the format '<type>://<container_id>'"),
    }),
    "PodTemplateSpec": ("PodTemplateSpec describes the data a pod should have when created from a template", {
        "metadata": _f("ObjectMeta", "Standard object's metadata."),
        "spec": _f("PodSpec", "Specification of the desired behavior of the pod."),
    }),
    # ---------------------------------------------------------------- core/v1 Service, Endpoints
    "Service": ("Service is a named abstraction of software service (for example, mysql) consisting of local "
                "port (for example 3306) that the proxy listens on, and the selector that determines which pods "
                "will answer requests sent through the proxy.", _top("ServiceSpec", "ServiceStatus")),
    "ServiceSpec": ("ServiceSpec describes the attributes that a user creates on a service.", {
        "ports": _f("[ServicePort]", "The list of ports that are exposed by this service.", "merge:port"),
        "selector": _f("{string}", "Route service traffic to pods with label keys and values matching this "
                       "selector. If empty or not present, the service is assumed to have an external process "
                       "managing its endpoints."),
        "clusterIP": _f("string", "clusterIP is the IP address of the service and is usually assigned randomly. "
                        "\"None\" makes a headless service. Cannot be changed once set."),
        "clusterIPs": _f("[string]", "ClusterIPs is a list of IP addresses assigned to this service."),
        "type": _f("string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options "
                   "are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
        "externalIPs": _f("[string]", "externalIPs is a list of IP addresses for which nodes in the cluster will "
                          "also accept traffic for this service."),
        "sessionAffinity": _f("string", "Supports \"ClientIP\" and \"None\". Used to maintain session affinity. "
                              "Defaults to None."),
        "sessionAffinityConfig": _f("object", "sessionAffinityConfig contains the configurations of session "
                                    "affinity."),
        "loadBalancerIP": _f("string", "Deprecated: Only applies to Service Type: LoadBalancer."),
        "loadBalancerSourceRanges": _f("[string]", "If specified and supported by the platform, traffic through "
                                       "the cloud-provider load-balancer will be restricted to the specified "
                                       "client IPs."),
        "loadBalancerClass": _f("string", "loadBalancerClass is the class of the load balancer implementation "
                                "this Service belongs to."),
        "externalName": _f("string", "externalName is the external reference that discovery mechanisms will "
                           "return as an alias for this service (e.g. a DNS CNAME record)."),
        "externalTrafficPolicy": _f("string", "externalTrafficPolicy describes how nodes distribute service "
                                    "traffic they receive on one of the Service's \"externally-facing\" "
                                    "addresses: Cluster or Local."),
        "internalTrafficPolicy": _f("string", "InternalTrafficPolicy describes how nodes distribute service "
                                    "traffic they receive on the ClusterIP: Cluster or Local."),
        "healthCheckNodePort": _f("integer", "healthCheckNodePort specifies the healthcheck nodePort for the "
                                  "service."),
        "publishNotReadyAddresses": _f("boolean", "publishNotReadyAddresses indicates that any agent which deals "
                                       "with endpoints for this Service should disregard any indications of "
                                       "ready/not-ready."),
        "ipFamilies": _f("[string]", "IPFamilies is a list of IP families (e.g. IPv4, IPv6) assigned to this "
                         "service."),
        "ipFamilyPolicy": _f("string", "IPFamilyPolicy represents the dual-stack-ness requested or required by "
                             "this Service: SingleStack, PreferDualStack or RequireDualStack."),
        "allocateLoadBalancerNodePorts": _f("boolean", "allocateLoadBalancerNodePorts defines if NodePorts will "
                                            "be automatically allocated for services with type LoadBalancer."),
        "trafficDistribution": _f("string", "TrafficDistribution offers a way to express preferences for how "
                                  "traffic is distributed to Service endpoints."),
    }),
    "ServicePort": ("ServicePort contains information on service's port.", {
        "name": _f("string", "The name of this port within the service. This must be a DNS_LABEL. All ports "
                   "within a ServiceSpec must have unique names."),
        "protocol": _f("string", "The IP protocol for this port. Supports \"TCP\", \"UDP\", and \"SCTP\". "
                       "Default is TCP."),
        "appProtocol": _f("string", "The application protocol for this port."),
        "port!": _f("integer", "The port that will be exposed by this service."),
        "targetPort": _f("IntOrString", "Number or name of the port to access on the pods targeted by the "
                         "service. If this is a string, it will be looked up as a named port in the target Pod's "
                         "container ports. Defaults to the value of the 'port' field."),
        "nodePort": _f("integer", "The port on each node on which this service is exposed when type is NodePort "
                       "or LoadBalancer. Usually assigned by the system."),
    }),
    "ServiceStatus": ("ServiceStatus represents the current status of a service.", {
        "loadBalancer": _f("LoadBalancerStatus", "LoadBalancer contains the current status of the load-balancer, "
                           "if one is present."),
        "conditions": _f("[Condition]", "Current service state", "merge:type"),
    }),
    "LoadBalancerStatus": ("LoadBalancerStatus represents the status of a load-balancer.", {
        "ingress": _f("[LoadBalancerIngress]", "Ingress is a list containing ingress points for the "
                      "load-balancer."),
    }),
    "LoadBalancerIngress": ("LoadBalancerIngress represents the status of a load-balancer ingress point.", {
        "ip": _f("string", "IP is set for load-balancer ingress points that are IP based."),
        "hostname": _f("string", "Hostname is set for load-balancer ingress points that are DNS based."),
        "ipMode": _f("string", "IPMode specifies how the load-balancer IP behaves."),
        "ports": _f("[object]", "Ports is a list of records of service ports."),
    }),
    "Endpoints": ("Endpoints is a collection of endpoints that implement the actual service.", _top(None, None, {
        "subsets": _f("[EndpointSubset]", "The set of all endpoints is the union of all subsets. Addresses are "
                      "placed into subsets according to the IPs they share."),
    })),
    "EndpointSubset": ("EndpointSubset is a group of addresses with a common set of ports.", {
        "addresses": _f("[EndpointAddress]", "IP addresses which offer the related ports that are marked as "
                        "ready."),
        "notReadyAddresses": _f("[EndpointAddress]", "IP addresses which offer the related ports but are not "
                                "currently marked as ready."),
        "ports": _f("[EndpointPort]", "Port numbers available on the related IP addresses."),
    }),
    "EndpointAddress": ("EndpointAddress is a tuple that describes single IP address.", {
        "ip!": _f("string", "The IP of this endpoint."),
        "hostname": _f("string", "The Hostname of this endpoint"),
        "nodeName": _f("string", "Optional: Node hosting this endpoint."),
        "targetRef": _f("ObjectReference", "Reference to object providing the endpoint."),
    }),
    "EndpointPort": ("EndpointPort is a tuple that describes a single port.", {
        "name": _f("string", "The name of this port. This must match the 'name' field in the corresponding "
                   "ServicePort."),
        "port!": _f("integer", "The port number of the endpoint."),
        "protocol": _f("string", "The IP protocol for this port. Must be UDP, TCP, or SCTP. Default is TCP."),
        "appProtocol": _f("string", "The application protocol for this port."),
    }),
    "ObjectReference": ("ObjectReference contains enough information to let you inspect or modify the referred "
                        "object.", {
        "kind": _f("string", "Kind of the referent."),
        "namespace": _f("string", "Namespace of the referent."),
        "name": _f("string", "Name of the referent."),
        "uid": _f("string", "UID of the referent."),
        "apiVersion": _f("string", "API version of the referent."),
        "resourceVersion": _f("string", "Specific resourceVersion to which this reference is made, if any."),
        "fieldPath": _f("string", "If referring to a piece of an object instead of an entire object, this "
                        "string should contain a valid JSON/Go field access statement, such as "
                        "desiredState.manifest.containers[2]."),
    }),
    # ---------------------------------------------------------------- core/v1 cluster objects
    "Namespace": ("Namespace provides a scope for Names. Use of multiple namespaces is optional.",
                  _top("NamespaceSpec", "NamespaceStatus")),
    "NamespaceSpec": ("NamespaceSpec describes the attributes on a Namespace.", {
        "finalizers": _f("[string]", "Finalizers is an opaque list of values that must be empty to permanently "
                         "remove object from storage."),
    }),
    "NamespaceStatus": ("NamespaceStatus is information about the current status of a Namespace.", {
        "phase": _f("string", "Phase is the current lifecycle phase of the namespace: Active or Terminating."),
        "conditions": _f("[NamespaceCondition]", "Represents the latest available observations of a namespace's "
                         "current state.", "merge:type"),
    }),
    "NamespaceCondition": ("NamespaceCondition contains details about state of namespace.", {
        "type!": _f("string", "Type of namespace controller condition."),
        "status!": _f("string", "Status of the condition, one of True, False, Unknown."),
        "lastTransitionTime": _f(_TIME, "Last time the condition transitioned from one status to another."),
        "reason": _f("string", "Unique, one-word, CamelCase reason for the condition's last transition."),
        "message": _f("string", "Human-readable message indicating details about last transition."),
    }),
    "Node": ("Node is a worker node in Kubernetes. Each node will have a unique identifier in the cache (i.e. "
             "in etcd).", _top("NodeSpec", "NodeStatus")),
    "NodeSpec": ("NodeSpec describes the attributes that a node is created with.", {
        "podCIDR": _f("string", "PodCIDR represents the pod IP range assigned to the node."),
        "podCIDRs": _f("[string]", "podCIDRs represents the IP ranges assigned to the node for usage by Pods on "
                       "that node.", "merge"),
        "providerID": _f("string", "ID of the node assigned by the cloud provider."),
        "unschedulable": _f("boolean", "Unschedulable controls node schedulability of new pods. By default, node "
                            "is schedulable."),
        "taints": _f("[Taint]", "If specified, the node's taints."),
        "configSource": _f("object", "Deprecated: Previously used to specify the source of the node's "
                           "configuration."),
        "externalID": _f("string", "Deprecated. Not all kubelets will set this field."),
    }),
    "Taint": ("The node this Taint is attached to has the \"effect\" on any pod that does not tolerate the "
              "Taint.", {
        "key!": _f("string", "Required. The taint key to be applied to a node."),
        "value": _f("string", "The taint value corresponding to the taint key."),
        "effect!": _f("string", "Required. The effect of the taint on pods that do not tolerate the taint. "
                      "Valid effects are NoSchedule, PreferNoSchedule and NoExecute."),
        "timeAdded": _f(_TIME, "TimeAdded represents the time at which the taint was added."),
    }),
    "NodeStatus": ("NodeStatus is information about the current status of a node.", {
        "capacity": _f("{Quantity}", "Capacity represents the total resources of a node."),
        "allocatable": _f("{Quantity}", "Allocatable represents the resources of a node that are available for "
                          "scheduling. Defaults to Capacity."),
        "phase": _f("string", "NodePhase is the recently observed lifecycle phase of the node. Deprecated."),
        "conditions": _f("[NodeCondition]", "Conditions is an array of current observed node conditions.",
                         "merge:type"),
        "addresses": _f("[NodeAddress]", "List of addresses reachable to the node.", "merge:type"),
        "daemonEndpoints": _f("object", "Endpoints of daemons running on the Node."),
        "nodeInfo": _f("NodeSystemInfo", "Set of ids/uuids to uniquely identify the node."),
        "images": _f("[object]", "List of container images on this node"),
        "volumesInUse": _f("[string]", "List of attachable volumes in use (mounted) by the node."),
        "volumesAttached": _f("[object]", "List of volumes that are attached to the node."),
        "config": _f("object", "Status of the config assigned to the node via the dynamic Kubelet config feature."),
        "runtimeHandlers": _f("[object]", "The available runtime handlers."),
        "features": _f("object", "Features describes the set of features implemented by the CRI implementation."),
    }),
    "NodeCondition": ("NodeCondition contains condition information for a node.", {
        "type!": _f("string", "Type of node condition, e.g. Ready, MemoryPressure, DiskPressure."),
        "status!": _f("string", "Status of the condition, one of True, False, Unknown."),
        "lastHeartbeatTime": _f(_TIME, "Last time we got an update on a given condition."),
        "lastTransitionTime": _f(_TIME, "Last time the condition transit from one status to another."),
        "reason": _f("string", "(brief) reason for the condition's last transition."),
        "message": _f("string", "Human readable message indicating details about last transition."),
    }),
    "NodeAddress": ("NodeAddress contains information for the node's address.", {
        "type!": _f("string", "Node address type, one of Hostname, ExternalIP or InternalIP."),
        "address!": _f("string", "The node address."),
    }),
    "NodeSystemInfo": ("NodeSystemInfo is a set of ids/uuids to uniquely identify the node.", {
        "machineID": _f("string", "MachineID reported by the node."),
        "systemUUID": _f("string", "SystemUUID reported by the node."),
        "bootID": _f("string", "Boot ID reported by the node."),
        "kernelVersion": _f("string", "Kernel Version reported by the node from 'uname -r'."),
        "osImage": _f("string", "OS Image reported by the node from /etc/os-release."),
        "containerRuntimeVersion": _f("string", "ContainerRuntime Version reported by the node through runtime "
                                      "remote API (e.g. docker://24.0.7)."),
        "kubeletVersion": _f("string", "Kubelet Version reported by the node."),
        "kubeProxyVersion": _f("string", "Deprecated: KubeProxy Version reported by the node."),
        "operatingSystem": _f("string", "The Operating System reported by the node"),
        "architecture": _f("string", "The Architecture reported by the node"),
        "swap": _f("object", "Swap Info reported by the node."),
    }),
    "ConfigMap": ("ConfigMap holds configuration data for pods to consume.", _top(None, None, {
        "data": _f("{string}", "Data contains the configuration data. Each key must consist of alphanumeric "
                   "characters, '-', '_' or '.'."),
        "binaryData": _f("{byte}", "BinaryData contains the binary data. Each key must consist of alphanumeric "
                         "characters, '-', '_' or '.'. Values are base64 encoded."),
        "immutable": _f("boolean", "Immutable, if set to true, ensures that data stored in the ConfigMap cannot "
                        "be updated (only object metadata can be modified)."),
    })),
    "Event": ("Event is a report of an event somewhere in the cluster.", _top(None, None, {
        "involvedObject!": _f("ObjectReference", "The object that this event is about."),
        "reason": _f("string", "This should be a short, machine understandable string that gives the reason "
                     "for the transition into the object's current status."),
        "message": _f("string", "A human-readable description of the status of this operation."),
        "source": _f("EventSource", "The component reporting this event. Should be a short machine "
                     "understandable string."),
        "firstTimestamp": _f(_TIME, "The time at which the event was first recorded."),
        "lastTimestamp": _f(_TIME, "The time at which the most recent occurrence of this event was recorded."),
        "count": _f("integer", "The number of times this event has occurred."),
        "type": _f("string", "Type of this event (Normal, Warning), new types could be added in the future"),
        "eventTime": _f("MicroTime", "Time when this Event was first observed."),
        "series": _f("EventSeries", "Data about the Event series this event represents or nil if it's a "
                     "singleton Event."),
        "action": _f("string", "What action was taken/failed regarding to the Regarding object."),
        "related": _f("ObjectReference", "Optional secondary object for more complex actions."),
        "reportingComponent": _f("string", "Name of the controller that emitted this Event, e.g. "
                                 "`kubernetes.io/kubelet`."),
        "reportingInstance": _f("string", "ID of the controller instance, e.g. `kubelet-xyzf`."),
    })),
    "EventSource": ("EventSource contains information for an event.", {
        "component": _f("string", "Component from which the event is generated."),
        "host": _f("string", "Node name on which the event is generated."),
    }),
    "EventSeries": ("EventSeries contain information on series of events.", {
        "count": _f("integer", "Number of occurrences in this series up to the last heartbeat time"),
        "lastObservedTime": _f("MicroTime", "Time of the last occurrence observed"),
    }),
    # ---------------------------------------------------------------- apps/v1
    "Deployment": ("Deployment enables declarative updates for Pods and ReplicaSets.",
                   _top("DeploymentSpec", "DeploymentStatus")),
    "DeploymentSpec": ("DeploymentSpec is the specification of the desired behavior of the Deployment.", {
        "replicas": _f("integer", "Number of desired pods. This is a pointer to distinguish between explicit zero "
                       "and not specified. Defaults to 1."),
        "selector!": _f("LabelSelector", "Label selector for pods. Existing ReplicaSets whose pods are selected by "
                        "this will be the ones affected by this deployment. It must match the pod template's "
                        "labels."),
        "template!": _f("PodTemplateSpec", "Template describes the pods that will be created. The only allowed "
                        "template.spec.restartPolicy value is \"Always\"."),
        "strategy": _f("DeploymentStrategy", "The deployment strategy to use to replace existing pods with new "
                       "ones.", "retainKeys"),
        "minReadySeconds": _f("integer", "Minimum number of seconds for which a newly created pod should be ready "
                              "without any of its container crashing, for it to be considered available."),
        "revisionHistoryLimit": _f("integer", "The number of old ReplicaSets to retain to allow rollback. "
                                   "Defaults to 10."),
        "paused": _f("boolean", "Indicates that the deployment is paused."),
        "progressDeadlineSeconds": _f("integer", "The maximum time in seconds for a deployment to make progress "
                                      "before it is considered to be failed. Defaults to 600s."),
    }),
    "DeploymentStrategy": ("DeploymentStrategy describes how to replace existing pods with new ones.", {
        "type": _f("string", "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". Default is "
                   "RollingUpdate."),
        "rollingUpdate": _f("RollingUpdateDeployment", "Rolling update config params. Present only if "
                            "DeploymentStrategyType = RollingUpdate."),
    }),
    "RollingUpdateDeployment": ("Spec to control the desired behavior of rolling update.", {
        "maxUnavailable": _f("IntOrString", "The maximum number of pods that can be unavailable during the "
                             "update. Value can be an absolute number (ex: 5) or a percentage of desired pods "
                             "(ex: 10%). Defaults to 25%."),
        "maxSurge": _f("IntOrString", "The maximum number of pods that can be scheduled above the desired number "
                       "of pods. Value can be an absolute number (ex: 5) or a percentage of desired pods (ex: "
                       "10%). Defaults to 25%."),
    }),
    "DeploymentStatus": ("DeploymentStatus is the most recently observed status of the Deployment.", {
        "observedGeneration": _f("int64", "The generation observed by the deployment controller."),
        "replicas": _f("integer", "Total number of non-terminated pods targeted by this deployment (their labels "
                       "match the selector)."),
        "updatedReplicas": _f("integer", "Total number of non-terminated pods targeted by this deployment that "
                              "have the desired template spec."),
        "readyReplicas": _f("integer", "Total number of non-terminated pods targeted by this Deployment with a "
                            "Ready Condition."),
        "availableReplicas": _f("integer", "Total number of available non-terminated pods (ready for at least "
                                "minReadySeconds) targeted by this deployment."),
        "unavailableReplicas": _f("integer", "Total number of unavailable pods targeted by this deployment."),
        "terminatingReplicas": _f("integer", "Total number of terminating pods targeted by this deployment."),
        "conditions": _f("[DeploymentCondition]", "Represents the latest available observations of a "
                         "deployment's current state.", "merge:type"),
        "collisionCount": _f("integer", "Count of hash collisions for the Deployment."),
    }),
    "DeploymentCondition": ("DeploymentCondition describes the state of a deployment at a certain point.", {
        "type!": _f("string", "Type of deployment condition: Available, Progressing, ReplicaFailure."),
        "status!": _f("string", "Status of the condition, one of True, False, Unknown."),
        "lastUpdateTime": _f(_TIME, "The last time this condition was updated."),
        "lastTransitionTime": _f(_TIME, "Last time the condition transitioned from one status to another."),
        "reason": _f("string", "The reason for the condition's last transition."),
        "message": _f("string", "A human readable message indicating details about the transition."),
    }),
    "ReplicaSet": ("ReplicaSet ensures that a specified number of pod replicas are running at any given time.",
                   _top("ReplicaSetSpec", "ReplicaSetStatus")),
    "ReplicaSetSpec": ("ReplicaSetSpec is the specification of a ReplicaSet.", {
        "replicas": _f("integer", "Replicas is the number of desired pods. Defaults to 1."),
        "minReadySeconds": _f("integer", "Minimum number of seconds for which a newly created pod should be "
                              "ready without any of its container crashing, for it to be considered available."),
        "selector!": _f("LabelSelector", "Selector is a label query over pods that should match the replica "
                        "count. Label keys and values that must match in order to be controlled by this replica "
                        "set. It must match the pod template's labels."),
        "template": _f("PodTemplateSpec", "Template is the object that describes the pod that will be created if "
                       "insufficient replicas are detected."),
    }),
    "ReplicaSetStatus": ("ReplicaSetStatus represents the current status of a ReplicaSet.", {
        "replicas!": _f("integer", "Replicas is the most recently observed number of non-terminating pods."),
        "fullyLabeledReplicas": _f("integer", "The number of non-terminating pods that have labels matching the "
                                   "labels of the pod template of the replicaset."),
        "readyReplicas": _f("integer", "The number of non-terminating pods targeted by this ReplicaSet with a "
                            "Ready Condition."),
        "availableReplicas": _f("integer", "The number of available non-terminating pods (ready for at least "
                                "minReadySeconds) for this replica set."),
        "terminatingReplicas": _f("integer", "The number of terminating pods for this replica set."),
        "observedGeneration": _f("int64", "ObservedGeneration reflects the generation of the most recently "
                                 "observed ReplicaSet."),
        "conditions": _f("[ReplicaSetCondition]", "Represents the latest available observations of a replica "
                         "set's current state.", "merge:type"),
    }),
    "ReplicaSetCondition": ("ReplicaSetCondition describes the state of a replica set at a certain point.", {
        "type!": _f("string", "Type of replica set condition."),
        "status!": _f("string", "Status of the condition, one of True, False, Unknown."),
        "lastTransitionTime": _f(_TIME, "The last time the condition transitioned from one status to another."),
        "reason": _f("string", "The reason for the condition's last transition."),
        "message": _f("string", "A human readable message indicating details about the transition."),
    }),
    # ---------------------------------------------------------------- coordination.k8s.io/v1, autoscaling/v1
    "Lease": ("Lease defines a lease concept.", _top("LeaseSpec", None)),
    "LeaseSpec": ("LeaseSpec is a specification of a Lease.", {
        "holderIdentity": _f("string", "holderIdentity contains the identity of the holder of a current lease."),
        "leaseDurationSeconds": _f("integer", "leaseDurationSeconds is a duration that candidates for a lease "
                                   "need to wait to force acquire it. This is measured against the time of last "
                                   "observed renewTime."),
        "acquireTime": _f("MicroTime", "acquireTime is a time when the current lease was acquired."),
        "renewTime": _f("MicroTime", "renewTime is a time when the current holder of a lease has last updated "
                        "the lease."),
        "leaseTransitions": _f("integer", "leaseTransitions is the number of transitions of a lease between "
                               "holders."),
        "strategy": _f("string", "Strategy indicates the strategy for picking the leader for coordinated leader "
                       "election."),
        "preferredHolder": _f("string", "PreferredHolder signals to a lease holder that the lease has a more "
                              "optimal holder and should be given up."),
    }),
    "Scale": ("Scale represents a scaling request for a resource.", _top("ScaleSpec", "ScaleStatus")),
    "ScaleSpec": ("ScaleSpec describes the attributes of a scale subresource.", {
        "replicas": _f("integer", "replicas is the desired number of instances for the scaled object."),
    }),
    "ScaleStatus": ("ScaleStatus represents the current status of a scale subresource.", {
        "replicas!": _f("integer", "replicas is the actual number of observed instances of the scaled object."),
        "selector": _f("string", "selector is the label query over pods that should match the replicas count."),
    }),
}

# Top-level definitions that are API kinds: short name -> (group, version, kind).
KIND_DEFS: dict[str, tuple[str, str, str]] = {
    "Pod": ("", "v1", "Pod"), "Service": ("", "v1", "Service"), "Endpoints": ("", "v1", "Endpoints"),
    "Namespace": ("", "v1", "Namespace"), "Node": ("", "v1", "Node"), "ConfigMap": ("", "v1", "ConfigMap"),
    "Event": ("", "v1", "Event"), "Deployment": ("apps", "v1", "Deployment"),
    "ReplicaSet": ("apps", "v1", "ReplicaSet"), "Lease": ("coordination.k8s.io", "v1", "Lease"),
    "Scale": ("autoscaling", "v1", "Scale"),
}


class FieldInfo(NamedTuple):
    type: str
    description: str
    patch: str
    required: bool


def fields_of(defn: str) -> dict[str, FieldInfo]:
    """The fields of a definition with the `!` required marker parsed out (cached)."""
    cached = _FIELDS_CACHE.get(defn)
    if cached is None:
        cached = {}
        for raw, f in DEFS[defn][1].items():
            name = raw.rstrip("!")
            cached[name] = FieldInfo(f.type, f.description, f.patch, raw.endswith("!"))
        _FIELDS_CACHE[defn] = cached
    return cached


_FIELDS_CACHE: dict[str, dict[str, FieldInfo]] = {}


def is_def(type_: str) -> bool:
    return type_ in DEFS


def list_item(type_: str) -> str | None:
    return type_[1:-1] if type_.startswith("[") and type_.endswith("]") else None


def map_value(type_: str) -> str | None:
    return type_[1:-1] if type_.startswith("{") and type_.endswith("}") else None


def patch_merge_key(patch: str) -> str | None:
    """The merge key of a "merge:<key>" / "merge,retainKeys:<key>" patch behaviour."""
    if ":" in patch:
        return patch.split(":", 1)[1]
    return None


def patch_strategy(patch: str) -> str:
    """x-kubernetes-patch-strategy value ("merge", "retainKeys", "merge,retainKeys" or "")."""
    return patch.split(":", 1)[0] if patch and patch != "atomic" else ""
