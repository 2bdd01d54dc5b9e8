package org.fhirdesens.validator;

import ca.uhn.fhir.context.FhirContext;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;

/**
 * The HL7 validator's engine as a local HTTP service, so one slow JVM start serves a whole test
 * session or CLI run.
 *
 * <pre>
 *   java -Xmx1g -cp "fhir-desens-validator.jar:lib/*" org.fhirdesens.validator.ValidatorService \
 *        --port 0 --package fhir-desens.tgz [--exit-on-stdin-close]
 * </pre>
 *
 * <p>It loads everything and validates one warm-up resource before it listens, then prints one
 * JSON line on stdout, {@code {"event":"listening","url":"http://127.0.0.1:PORT"}}, which is the
 * readiness signal. Endpoints:
 *
 * <ul>
 *   <li>{@code GET /health}: 200 "ok".
 *   <li>{@code POST /validate}: a JSON resource gives one OperationOutcome; a JSON array of
 *       resources gives a JSON array of OperationOutcomes, in order.
 * </ul>
 */
public final class ValidatorService {
  private static final int MAX_BODY_BYTES = 64 * 1024 * 1024;

  private ValidatorService() {}

  public static void main(String[] args) throws Exception {
    String host = "127.0.0.1";
    int port = 0;
    boolean exitOnStdinClose = false;
    List<Path> packages = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--host" -> host = args[++i];
        case "--port" -> port = Integer.parseInt(args[++i]);
        case "--package" -> packages.add(Path.of(args[++i]));
        case "--exit-on-stdin-close" -> exitOnStdinClose = true;
        default -> {
          System.err.println("usage: ValidatorService [--host H] [--port N] [--package FILE.tgz]... "
              + "[--exit-on-stdin-close]");
          System.exit(2);
        }
      }
    }
    FhirContext context = FhirContext.forR4();
    Engine engine = new Engine(context, packages);
    engine.warmUp();

    HttpServer server = HttpServer.create(new InetSocketAddress(host, port), 16);
    server.createContext("/health", exchange -> respond(exchange, 200, "text/plain", "ok"));
    server.createContext("/validate", exchange -> handleValidate(exchange, engine));
    // Two workers: the machine has few cores and the validator is CPU-bound.
    server.setExecutor(Executors.newFixedThreadPool(2));
    server.start();
    String url = "http://" + host + ":" + server.getAddress().getPort();
    System.out.println("{\"event\":\"listening\",\"url\":\"" + url + "\"}");
    System.out.flush();
    if (exitOnStdinClose) {
      // The parent (pytest, the CLI) holds our stdin: when it goes away, so do we.
      Thread watcher = new Thread(() -> {
        try {
          while (System.in.read() >= 0) {
            // ignore input
          }
        } catch (IOException ignored) {
          // closed
        }
        server.stop(0);
        System.exit(0);
      });
      watcher.setDaemon(true);
      watcher.start();
    }
  }

  private static void handleValidate(HttpExchange exchange, Engine engine) throws IOException {
    try {
      if (!"POST".equals(exchange.getRequestMethod())) {
        respond(exchange, 405, "text/plain", "POST a resource or a JSON array of resources");
        return;
      }
      byte[] body = readBody(exchange.getRequestBody());
      if (body == null) {
        respond(exchange, 413, "text/plain", "request body too large");
        return;
      }
      String text = new String(body, StandardCharsets.UTF_8);
      respond(exchange, 200, "application/fhir+json", engine.validateJson(text));
    } catch (RuntimeException error) {
      respond(exchange, 500, "text/plain", "validation failed: " + error);
    } finally {
      exchange.close();
    }
  }

  private static byte[] readBody(InputStream in) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    byte[] buffer = new byte[65536];
    int n;
    while ((n = in.read(buffer)) >= 0) {
      out.write(buffer, 0, n);
      if (out.size() > MAX_BODY_BYTES) {
        return null;
      }
    }
    return out.toByteArray();
  }

  private static void respond(HttpExchange exchange, int status, String type, String text)
      throws IOException {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    exchange.getResponseHeaders().set("Content-Type", type + "; charset=utf-8");
    exchange.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = exchange.getResponseBody()) {
      out.write(bytes);
    }
  }
}
