#!/usr/bin/env bash
# contrib/hooks/zonefile: publish, replace, revoke, 255-character strings, hostile arguments.
set -u
hook=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DKIMROTOR_ZONE_INCLUDE=$work/dkim.db DKIMROTOR_ZONE_CONFIG=/nonexistent
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $name"; fi
}
long=$(head -c 400 /dev/zero | tr '\0' A)
"$hook" publish example.com s1 "v=DKIM1; k=rsa; p=$long"
check "publish writes the record" grep -q '^s1._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; k=rsa; p=A' "$work/dkim.db"
strings_fit() { grep -oE '"[^"]*"' "$work/dkim.db" | awk '{ if (length($0) > 257) bad = 1 } END { exit bad }'; }
check "strings are at most 255 characters" strings_fit
check "the long value is split" bash -c "[ \$(grep -oE '\"[^\"]*\"' '$work/dkim.db' | wc -l) -eq 2 ]"
"$hook" publish example.com s2 "v=DKIM1; k=ed25519; p=abc"
"$hook" revoke example.com s1 "v=DKIM1; p="
check "revoke replaces, keeps the record" grep -q '^s1._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; p=" )' "$work/dkim.db"
check "one line per selector" bash -c "[ \$(wc -l < '$work/dkim.db') -eq 2 ]"
check "other selectors untouched" grep -q '^s2._domainkey.example.com. .*p=abc' "$work/dkim.db"
DKIMROTOR_RECORD_NAME=slot1._domainkey.dkim.example.net "$hook" publish example.com s5 "v=DKIM1; p=five"
check "RECORD_NAME is the owner name" grep -q '^slot1._domainkey.dkim.example.net. 3600 IN TXT ( "v=DKIM1; p=five" )' "$work/dkim.db"
check "RECORD_NAME: no record at SELECTOR._domainkey.DOMAIN" bash -c "! grep -q '^s5\\.' '$work/dkim.db'"
DKIMROTOR_RECORD_NAME=slot1._domainkey.dkim.example.net. "$hook" revoke example.com s5 "v=DKIM1; p="
check "RECORD_NAME with a trailing dot replaces the same record" bash -c "[ \$(grep -c '^slot1\\.' '$work/dkim.db') -eq 1 ] && grep -q '^slot1.*\"v=DKIM1; p=\" )' '$work/dkim.db'"
check "a RECORD_NAME without ._domainkey. refused" bash -c "! DKIMROTOR_RECORD_NAME=www.example.com '$hook' publish example.com s6 x 2>/dev/null"
check "a hostile RECORD_NAME refused" bash -c "! DKIMROTOR_RECORD_NAME='a._domainkey.b c' '$hook' publish example.com s6 x 2>/dev/null"
check "a refused RECORD_NAME writes nothing" bash -c "[ \$(wc -l < '$work/dkim.db') -eq 3 ]"
check "hostile domain refused" bash -c "! '$hook' publish 'a;rm -rf /' s1 x 2>/dev/null"
check "quotes refused" bash -c "! '$hook' publish example.com s3 'v=DKIM1; p=\"x' 2>/dev/null"
check "unknown action refused" bash -c "! '$hook' delete example.com s1 x 2>/dev/null"
check "a failing reload command fails the hook" bash -c "! DKIMROTOR_ZONE_RELOAD=/bin/false '$hook' publish example.com s4 x 2>/dev/null"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
