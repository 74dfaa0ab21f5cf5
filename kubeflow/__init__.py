"""Kubeflow Pipelines deployment: KubeflowV2DagRunner compile/submit, image, manifests."""
