// Package components holds the stack's reusable Pulumi ComponentResources, one per file: the
// Azure side (Network, Storage, Registry, ImageBuild, Cluster, WorkloadIdentity,
// ManagedPrometheus) and the Kubernetes side (QueueConsumer, KedaOperatorIdentity,
// MetricsScraping). Each has pure builders that hold the
// decisions (tested without mocks) and a constructor that wires them (tested under mocks).
package components
