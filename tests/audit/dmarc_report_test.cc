#include "audit/dmarc_report.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace dkimrotor::audit {
namespace {

std::string Report(const std::string& range, const std::string& records, const std::string& domain = "example.test") {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n<report_metadata><org_name>google.com</org_name>"
         "<report_id>r1</report_id>" + range + "</report_metadata>\n<policy_published><domain>" + domain +
         "</domain><p>none</p></policy_published>\n" + records + "</feedback>\n";
}

const std::string kRange = "<date_range><begin>1764028800</begin><end>1764115199</end></date_range>";

TEST(DmarcReport, ParsesMetadataRecordsAndDkimResults) {
  auto r = ParseDmarcReport(Report(kRange,
      "<record><row><source_ip>192.0.2.1</source_ip><count>3</count></row>"
      "<auth_results><dkim><domain>Example.TEST</domain><selector>S1</selector><result>pass</result></dkim>"
      "<dkim><domain>esp.test</domain><selector>x</selector><result>fail</result></dkim>"
      "<spf><domain>example.test</domain><result>pass</result></spf></auth_results></record>"
      "<record><row><count> 2 </count></row><auth_results><spf><domain>a</domain></spf></auth_results></record>"));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->org_name, "google.com");
  EXPECT_EQ(r->report_id, "r1");
  EXPECT_EQ(r->domain, "example.test");
  EXPECT_EQ(r->begin, 1764028800);
  EXPECT_EQ(r->end, 1764115199);
  ASSERT_EQ(r->records.size(), 2u);
  EXPECT_EQ(r->records[0].count, 3u);
  ASSERT_EQ(r->records[0].dkim.size(), 2u);
  EXPECT_EQ(r->records[0].dkim[0].domain, "example.test");
  EXPECT_EQ(r->records[0].dkim[0].selector, "s1");
  EXPECT_EQ(r->records[0].dkim[0].result, "pass");
  EXPECT_EQ(r->records[1].count, 2u);
  EXPECT_TRUE(r->records[1].dkim.empty());
}

TEST(DmarcReport, NamespacedElementsAreRead) {
  auto r = ParseDmarcReport(
      "<d:feedback xmlns:d=\"urn:ietf:params:xml:ns:dmarc-2.0\"><d:report_metadata><d:date_range>"
      "<d:begin>1764028800</d:begin><d:end>1764115199</d:end></d:date_range></d:report_metadata>"
      "<d:policy_published><d:domain>example.test</d:domain></d:policy_published></d:feedback>");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->domain, "example.test");
}

TEST(DmarcReport, MalformedXmlIsAnError) {
  auto r = ParseDmarcReport("<feedback><report_metadata></feedback>");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("not well-formed XML"), std::string::npos) << r.error().message;
  auto other = ParseDmarcReport("<html/>");
  ASSERT_FALSE(other.has_value());
  EXPECT_NE(other.error().message.find("<feedback>"), std::string::npos) << other.error().message;
}

TEST(DmarcReport, WrongDatesAreRefused) {
  auto backwards = ParseDmarcReport(Report("<date_range><begin>1764115199</begin><end>1764028800</end></date_range>", ""));
  ASSERT_FALSE(backwards.has_value());
  EXPECT_NE(backwards.error().message.find("before it begins"), std::string::npos) << backwards.error().message;
  auto absurd = ParseDmarcReport(Report("<date_range><begin>1764028800</begin><end>99999999999</end></date_range>", ""));
  ASSERT_FALSE(absurd.has_value());
  EXPECT_NE(absurd.error().message.find("2000 to 2099"), std::string::npos) << absurd.error().message;
  auto missing = ParseDmarcReport(Report("<date_range><begin>yesterday</begin></date_range>", ""));
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("seconds since the epoch"), std::string::npos) << missing.error().message;
}

TEST(DmarcReport, BadCountIsAnError) {
  auto r = ParseDmarcReport(Report(kRange, "<record><row><count>-4</count></row></record>"));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("<count>"), std::string::npos) << r.error().message;
}

// "Billion laughs": ten levels of ten references would be 10^9 copies if expanded. pugixml
// defines no DTD entities, so the reference stays as literal text, at once.
TEST(DmarcReport, EntitiesAreNotExpanded) {
  std::string dtd = "<?xml version=\"1.0\"?>\n<!DOCTYPE feedback [\n<!ENTITY lol \"lol\">\n";
  for (int i = 1; i <= 9; ++i) {
    dtd += "<!ENTITY lol" + std::to_string(i) + " \"";
    for (int j = 0; j < 10; ++j) dtd += "&lol" + (i == 1 ? std::string() : std::to_string(i - 1)) + ";";
    dtd += "\">\n";
  }
  dtd += "]>\n";
  const std::string body = Report(kRange,
      "<record><row><count>1</count></row><auth_results><dkim><domain>example.test</domain>"
      "<selector>&lol9;</selector><result>pass</result></dkim></auth_results></record>");
  const auto start = std::chrono::steady_clock::now();
  auto r = ParseDmarcReport(dtd + body.substr(body.find("<feedback>")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  ASSERT_EQ(r->records.size(), 1u);
  ASSERT_EQ(r->records[0].dkim.size(), 1u);
  EXPECT_EQ(r->records[0].dkim[0].selector, "&lol9;");
}

}  // namespace
}  // namespace dkimrotor::audit
