package org.fhirdesens.hapi;

import org.opencds.cqf.fhir.cql.EvaluationSettings;
import org.opencds.cqf.fhir.cr.hapi.config.CrBaseConfig;
import org.opencds.cqf.fhir.cr.hapi.config.CrProcessorConfig;
import org.opencds.cqf.fhir.cr.hapi.config.RepositoryConfig;
import org.opencds.cqf.fhir.cr.hapi.config.r4.ApplyOperationConfig;
import org.opencds.cqf.fhir.utility.client.TerminologyServerClientSettings;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;

/**
 * Clinical Reasoning's {@code PlanDefinition/$apply} (and {@code ActivityDefinition/$apply}) in the server,
 * on with {@code --fhir-desens.clinical-reasoning=true}: only the apply operations, not measures or
 * care gaps.
 */
@Configuration
@ConditionalOnProperty(name = "fhir-desens.clinical-reasoning", havingValue = "true")
@Import({RepositoryConfig.class, CrBaseConfig.class, CrProcessorConfig.class, ApplyOperationConfig.class})
public class ClinicalReasoningConfig {

  @Bean
  public EvaluationSettings evaluationSettings() {
    return EvaluationSettings.getDefault();
  }

  @Bean
  public TerminologyServerClientSettings terminologyServerClientSettings() {
    return TerminologyServerClientSettings.getDefault();
  }
}
