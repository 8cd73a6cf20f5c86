# Shared by the scripts: source it, do not run it.

# redact_url prints a database URL or connection string without its
# password (the userinfo's, or a password= parameter), so that what a script
# prints (a banner, an error) never shows it on a screen or in a CI log.
redact_url() {
  sed -E \
    -e 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@#\1:xxxxx@#' \
    -e "s#(^|[?&[:space:]])password='[^']*'#\1password=xxxxx#g" \
    -e 's#(^|[?&[:space:]])password=[^&[:space:]]*#\1password=xxxxx#g' <<<"$1"
}
