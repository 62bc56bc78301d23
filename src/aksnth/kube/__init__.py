"""The Kubernetes side: node mutations, the drain and Kubernetes Events, through lightkube."""
