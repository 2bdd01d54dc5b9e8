package org.fhirdesens.hapi;

import java.io.IOException;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.batch.BatchAutoConfiguration;
import org.springframework.boot.autoconfigure.data.jpa.JpaRepositoriesAutoConfiguration;
import org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration;
import org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration;
import org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.boot.web.servlet.context.ServletWebServerApplicationContext;
import org.springframework.context.ApplicationListener;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * HAPI FHIR JPA for R4 on H2 (or PostgreSQL), for the integration tests and the sandbox.
 *
 * <pre>
 *   java -Xmx1g -cp "fhir-desens-hapi-server.jar:lib/*" org.fhirdesens.hapi.HapiServerApplication \
 *        --server.port=0 [--exit-on-stdin-close] [--spring.datasource.url=jdbc:postgresql://...]
 * </pre>
 *
 * <p>When everything is ready it prints one JSON line on stdout,
 * {@code {"event":"listening","url":"http://127.0.0.1:PORT/fhir"}}, the readiness signal the
 * Python side waits for (as with the Medplum-engine server).
 */
@SpringBootApplication(
    exclude = {
      // HAPI builds its own entity manager factory and runs its own scheduler.
      HibernateJpaAutoConfiguration.class,
      FlywayAutoConfiguration.class, // HAPI migrates its own schema (hbm2ddl here)
      JpaRepositoriesAutoConfiguration.class,
      QuartzAutoConfiguration.class,
      BatchAutoConfiguration.class
    })
public class HapiServerApplication {
  private static final String EXIT_ON_STDIN_CLOSE = "--exit-on-stdin-close";

  public static void main(String[] args) {
    boolean watchStdin = false;
    java.util.List<String> springArgs = new java.util.ArrayList<>();
    for (String arg : args) {
      if (EXIT_ON_STDIN_CLOSE.equals(arg)) {
        watchStdin = true;
      } else {
        springArgs.add(arg);
      }
    }
    SpringApplication application = new SpringApplication(HapiServerApplication.class);
    application.addListeners(new ReadyLine());
    ConfigurableApplicationContext context = application.run(springArgs.toArray(String[]::new));
    if (watchStdin) {
      exitWhenStdinCloses(context);
    }
  }

  /** The parent (pytest) holds our stdin: when it goes away, so do we. */
  private static void exitWhenStdinCloses(ConfigurableApplicationContext context) {
    Thread watcher = new Thread(() -> {
      try {
        while (System.in.read() >= 0) {
          // ignore input
        }
      } catch (IOException ignored) {
        // closed
      }
      System.exit(SpringApplication.exit(context));
    }, "stdin-watcher");
    watcher.setDaemon(true);
    watcher.start();
  }

  /** Prints the readiness line once the server accepts requests. */
  static final class ReadyLine implements ApplicationListener<ApplicationReadyEvent> {
    @Override
    public void onApplicationEvent(ApplicationReadyEvent event) {
      if (event.getApplicationContext() instanceof ServletWebServerApplicationContext web) {
        String host = event.getApplicationContext().getEnvironment().getProperty("server.address", "127.0.0.1");
        int port = web.getWebServer().getPort();
        System.out.println("{\"event\":\"listening\",\"url\":\"http://" + host + ":" + port + "/fhir\"}");
        System.out.flush();
      }
    }
  }
}
