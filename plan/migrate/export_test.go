package migrate

// FormatBytes is formatBytes, for the tests of package migrate_test.
var FormatBytes = formatBytes
