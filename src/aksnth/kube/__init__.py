"""The Kubernetes side: node mutations, the drain and Kubernetes Events, through a thin JSON client."""
