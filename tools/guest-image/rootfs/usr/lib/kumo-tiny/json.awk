# Flatten a JSON document into "path<TAB>value" lines, one per scalar. Object keys and array
# indices are joined with "/": {"public_keys": {"k": "ssh-ed25519 AAA\n"}} gives
# "public_keys/k<TAB>ssh-ed25519 AAA". Strings are unescaped; a string holding newlines gives one
# line per non-empty piece (same path). Enough for Nova's meta_data.json (busybox awk, no jq).
BEGIN { RS = "\001" }
{ s = s $0 }
END { n = length(s); pos = 1; value("") }

function ws() {
	while (pos <= n && index(" \t\r\n", substr(s, pos, 1)) > 0) pos++
}

function emit(path, v,   parts, i, k) {
	k = split(v, parts, "\n")
	for (i = 1; i <= k; i++) {
		sub(/\r$/, "", parts[i])
		if (parts[i] != "") print path "\t" parts[i]
	}
}

function str(   out, c, e, h) {
	pos++ # opening quote
	out = ""
	while (pos <= n) {
		if (match(substr(s, pos, 256), /^[^"\\]+/)) {
			out = out substr(s, pos, RLENGTH)
			pos += RLENGTH
			continue
		}
		c = substr(s, pos, 1)
		if (c == "\"") { pos++; return out }
		e = substr(s, pos + 1, 1)
		pos += 2
		if (e == "n") out = out "\n"
		else if (e == "t") out = out "\t"
		else if (e == "r") out = out "\r"
		else if (e == "b" || e == "f") out = out
		else if (e == "u") {
			h = tolower(substr(s, pos, 4))
			pos += 4
			# ASCII escapes (Nova writes e.g. \u003c for "<"); others become "?".
			if (substr(h, 1, 2) == "00" && index("01234567", substr(h, 3, 1)) > 0)
				out = out sprintf("%c", index("0123456789abcdef", substr(h, 3, 1)) * 16 - 16 + index("0123456789abcdef", substr(h, 4, 1)) - 1)
			else
				out = out "?"
		}
		else out = out e # \" \\ \/
	}
	return out
}

function value(path,   c, k, i, st) {
	ws()
	c = substr(s, pos, 1)
	if (c == "{") {
		pos++
		ws()
		if (substr(s, pos, 1) == "}") { pos++; return }
		while (pos <= n) {
			ws()
			k = str()
			ws()
			pos++ # ':'
			value(path == "" ? k : path "/" k)
			ws()
			c = substr(s, pos, 1)
			pos++
			if (c != ",") return
		}
	} else if (c == "[") {
		pos++
		ws()
		if (substr(s, pos, 1) == "]") { pos++; return }
		i = 0
		while (pos <= n) {
			value(path == "" ? i : path "/" i)
			i++
			ws()
			c = substr(s, pos, 1)
			pos++
			if (c != ",") return
		}
	} else if (c == "\"") {
		emit(path, str())
	} else {
		st = pos
		while (pos <= n && index(",}] \t\r\n", substr(s, pos, 1)) == 0) pos++
		print path "\t" substr(s, st, pos - st)
	}
}
