//go:build tools

// Package tools records the commands built from this wrapper module.
package tools

import (
	_ "github.com/versity/versitygw/cmd/versitygw"
)
