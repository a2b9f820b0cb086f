// Renders /openapi.json as a readable reference: every operation with its parameters, request
// body and responses. No framework and no network but this server; text is inserted as text.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function resolve(doc, schema) {
  let s = schema, seen = 0;
  while (s && s.$ref && seen++ < 10) {
    s = s.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), doc);
  }
  return s || {};
}

function schemaText(doc, schema, depth) {
  const s = resolve(doc, schema);
  if (depth > 3) return "…";
  if (s.type === "object" && s.properties) {
    const req = new Set(s.required || []);
    const lines = Object.entries(s.properties).map(([k, v]) =>
      `  ${k}${req.has(k) ? "" : "?"}: ${schemaText(doc, v, depth + 1).replace(/\n/g, "\n  ")}`);
    return `{\n${lines.join(",\n")}\n}`;
  }
  if (s.type === "array") return `[${schemaText(doc, s.items || {}, depth + 1)}]`;
  if (s.enum) return s.enum.map((e) => JSON.stringify(e)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  const bounds = [];
  if (s.minimum !== undefined) bounds.push(`>= ${s.minimum}`);
  if (s.maximum !== undefined) bounds.push(`<= ${s.maximum}`);
  if (s.minLength !== undefined) bounds.push(`length >= ${s.minLength}`);
  if (s.maxLength !== undefined) bounds.push(`length <= ${s.maxLength}`);
  const type = Array.isArray(s.type) ? s.type.join(" | ") : (s.type || "any");
  return type + (bounds.length ? ` (${bounds.join(", ")})` : "");
}

function operation(doc, path, method, op, inherited) {
  const id = op.operationId || `${method}-${path}`;
  const head = el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), path);
  if (op.security && op.security.length) head.append(el("span", { class: "auth" }, "Bearer token"));
  const section = el("section", { class: "op", id }, head, el("p", {}, op.summary || ""));
  if (op.description) section.append(el("p", {}, op.description));
  const params = [...(inherited || []), ...(op.parameters || [])].map((p) => resolve(doc, p));
  if (params.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "schema"), el("th", {}, "")));
    for (const p of params) {
      table.append(el("tr", {}, el("td", { class: "code" }, p.name + (p.required ? "" : "?")), el("td", {}, p.in),
        el("td", { class: "code" }, schemaText(doc, p.schema || {}, 0)), el("td", {}, p.description || "")));
    }
    section.append(table);
  }
  const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (body) section.append(el("p", {}, "Request body (JSON):"), el("pre", {}, schemaText(doc, body.schema, 0)));
  const responses = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning")));
  for (const [status, r] of Object.entries(op.responses || {})) {
    responses.append(el("tr", {}, el("td", { class: "code" }, status), el("td", {}, resolve(doc, r).description || "")));
  }
  section.append(responses);
  return [id, section];
}

async function main() {
  try {
    const r = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`GET /openapi.json answered ${r.status}`);
    const doc = await r.json();
    document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
    document.getElementById("description").textContent = doc.info.description || "";
    const toc = el("ul", {}), ops = document.getElementById("operations");
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        if (!item[method]) continue;
        const [id, section] = operation(doc, path, method, item[method], item.parameters);
        toc.append(el("li", {}, el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`)));
        ops.append(section);
      }
    }
    document.getElementById("toc").append(toc);
    document.body.dataset.state = "ready";
  } catch (e) {
    const box = document.getElementById("error");
    box.textContent = `Could not load the API description: ${e.message}`;
    box.hidden = false;
    document.body.dataset.state = "error";
  }
}

main();
