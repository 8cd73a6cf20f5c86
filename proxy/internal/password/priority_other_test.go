//go:build !linux

package password

func threadNice() int   { return 0 }
func expectedNice() int { return 0 }
