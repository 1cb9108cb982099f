// Package components holds the stack's reusable Pulumi ComponentResources, one per file: the
// Azure side (Network, Storage, Registry, ImageBuild, Cluster, WorkloadIdentity) and the
// consumer workload on the cluster (QueueConsumer). Each has pure builders that hold the
// decisions (tested without mocks) and a constructor that wires them (tested under mocks).
package components
