"""The real-component test harness: Go-built tools started as processes.

Every component (etcd, kube-apiserver, versitygw) runs on a free loopback port with
its own temp dir, is torn down reliably, and keeps its log; a component that fails to
start raises :class:`ComponentError` naming the component, the reason and the log.
"""
