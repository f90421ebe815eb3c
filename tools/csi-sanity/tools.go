//go:build tools

// Package tools records the commands built from this wrapper module.
package tools

import (
	_ "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity"
)
